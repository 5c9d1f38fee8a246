"""Regenerate seal.json's tokens from its inputs (run by hand only when the format changes on purpose).

    .venv/bin/python tests/payload/vectors/generate.py

The committed tokens are the known answers test_seal.py checks byte for byte.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Sealer, _Parts

HERE = Path(__file__).parent


def _key(hex_scalar: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(hex_scalar, 16), ec.SECP256R1())


def seal_vector(v: dict[str, object]) -> bytes:
    sealer = Sealer(str(v["device_id"]), _key(str(v["device_d"])), _key(str(v["gateway_d"])).public_key())
    parts = _Parts(
        message_id=str(v["message_id"]),
        ephemeral_key=_key(str(v["ephemeral_d"])),
        cek=bytes.fromhex(str(v["cek"])),
        iv=bytes.fromhex(str(v["iv"])),
    )
    body = v["body"]
    assert isinstance(body, dict)
    sealed = sealer._seal_from_parts(
        Kind(str(v["kind"])),
        body,
        now=datetime.fromisoformat(str(v["now"])),
        clock_synced=bool(v["clock_synced"]),
        seq=int(str(v["seq"])),
        parts=parts,
    )
    return sealed.token


def main() -> None:
    path = HERE / "seal.json"
    vectors = json.loads(path.read_text(encoding="utf-8"))
    for v in vectors:
        v["token"] = seal_vector(v).decode("ascii")
    path.write_text(json.dumps(vectors, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
