"""Fuzz target: fleet ops' vehicle file as `mynabox provision check|write` reads it (fleet/bundle.py).

Input: the vehicle.toml's bytes, written beside real keys and certificates of one test vehicle (made once
at setup, the layout of tests/fleet's vehicle). ``load_vehicle`` returns a Bundle (then checked by the
firmware's own config loader, files and TLS included) or raises BundleError.
"""

from __future__ import annotations

import atexit
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import main

DEVICE_ID = "amb-0001"


def vehicle_dir(d: Path) -> None:
    """Keys and certificates at the paths the seeds name (tests/fleet/conftest.py's vehicle)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from mynabox.adapters.keyfiles import save_private_key, save_public_key
    from mynabox_testkit.tlsfiles import make_test_pki

    make_test_pki(d / "mqtt", clients=(DEVICE_ID,))
    make_test_pki(d / "summary", clients=(DEVICE_ID,))
    save_public_key(d / "gateway.pem", ec.generate_private_key(ec.SECP256R1()))
    save_private_key(d / "device-key.pem", ec.generate_private_key(ec.SECP256R1()))
    (d / "audit-key").write_bytes(secrets.token_bytes(32))


def setup() -> Callable[[bytes], None]:
    from mynabox.fleet.bundle import Bundle, BundleError, load_vehicle

    d = Path(tempfile.mkdtemp(prefix="mynabox-fuzz-vehicle-"))
    atexit.register(shutil.rmtree, d, True)
    vehicle_dir(d)
    path = d / "vehicle.toml"

    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        try:
            bundle = load_vehicle(path)
        except BundleError as err:
            str(err)
            return
        assert isinstance(bundle, Bundle) and bundle.manifest()

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
