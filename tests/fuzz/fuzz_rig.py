"""Fuzz target: a bench rig file (tests/hil/rig.py, what `make hil` reads) as TOML text.

Input: the file's bytes. Not UTF-8 is refused as load_rig does; otherwise ``parse_rig`` may only return a
Rig whose values are in range or raise RigError (issue 23 item 11: `rig = 5`, `oled.port = inf` escaped as
AttributeError and OverflowError and ended `make hil` in a pytest INTERNALERROR).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

from harness import ROOT, main

RIG = Path("/nonexistent/mynabox-bench/rig.toml")


def setup() -> Callable[[bytes], None]:
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))  # tests/hil is the package "hil", as pytest imports it
    from hil.rig import RigError, parse_rig

    def one_input(data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        try:
            rig = parse_rig(text, RIG)
        except RigError as err:
            assert err.problems and str(err)
            return
        assert rig.mode in ("hardware", "virtual")
        assert 0 <= rig.oled_port <= 255 and rig.oled_address in (0x3C, 0x3D)
        assert 0 < rig.operator_timeout_s <= 600 and 0 < rig.read_timeout_s <= 60
        assert all(math.isfinite(v) for table in rig.limits.values() for v in table.values())
        assert all(isinstance(v, bool) for v in rig.parts.values())

    return one_input


if __name__ == "__main__":
    main(setup, include=("mynabox", "hil"))
    sys.exit(0)
