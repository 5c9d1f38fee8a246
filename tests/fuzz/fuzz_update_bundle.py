"""Fuzz target: what the box checks in an update bundle before RAUC installs it (update/bundle.py), fed as
`update check-bundle` / `install` feed it: RAUC's `info --output-format=json` of the signed manifest.

Input: a flags byte (bit 0: --force-older), a u16-prefixed running version (--running), then RAUC's output
(decoded as the command decodes it). Only BundleRefused escapes, with a bounded printable reason; an accepted
bundle is for this board and not older than the running version unless forced.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import Reader, main

COMPATIBLE = "mynabox-rpi-arm64"


def setup() -> Callable[[bytes], None]:
    from mynabox.update import bundle

    def one_input(data: bytes) -> None:
        r = Reader(data)
        force = bool(r.byte() & 1)
        running = r.chunk().decode("utf-8", "replace")
        try:
            info = bundle.parse_info(r.rest().decode("utf-8", "replace"))
            for field in (info.compatible, info.version, info.build or ""):
                assert field.isprintable() and len(field) <= 121
            verdict = bundle.check(info, compatible=COMPATIBLE, running=running, force_older=force)
        except bundle.BundleRefused as err:
            reason = str(err)
            assert reason and len(reason) <= 400, len(reason)
            return
        assert info.compatible == COMPATIBLE
        assert force or bundle.version_key(info.version) >= bundle.version_key(running)
        assert len(verdict) <= 200

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
