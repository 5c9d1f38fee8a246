"""Regenerate the TEST-ONLY RSA key pool: `python make_keys.py` (run once; the keys are committed).

RSA key generation cannot be seeded, so the test JPKI hierarchy picks from this fixed pool to stay
byte-for-byte deterministic.
"""

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

POOL = ("ca-auth", "ca-sign", "ee-0", "ee-1", "ee-2", "ee-3")

if __name__ == "__main__":
    here = Path(__file__).parent
    for name in POOL:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (here / f"test-{name}.pem").write_bytes(pem)
