"""`make hil`: the bench suite on one rig, reports under reports/hil/<run>/.

    .venv/bin/python scripts/hil.py [--rig FILE] [--reports DIR] [-- PYTEST-ARGS...]

The run id is the UTC time and the rig's name. Exit code: 0 when every check passed (marginal values
included), 1 when one failed, 2 for a bad rig file.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make hil", description=__doc__.splitlines()[0])
    parser.add_argument("--rig", type=Path, default=ROOT / "hw/bench/rig.toml", help="the rig file")
    parser.add_argument("--reports", type=Path, help="report directory (default reports/hil/<run>)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    rig = args.rig.resolve()
    if not rig.exists():
        print(
            f"no rig file {rig}: copy hw/bench/rig.toml, edit it, and name it with `make hil RIG=FILE`",
            file=sys.stderr,
        )
        return 2
    # The whole file is checked here, before pytest starts: a rig file is outside input, and a problem
    # found inside pytest's start-up ended as an INTERNALERROR (exit 1, "a check failed").
    sys.path.insert(0, str(ROOT / "tests"))  # as pytest imports it (tests/hil is the package "hil")
    from hil.rig import RigError, load_rig

    try:
        load_rig(rig)
    except RigError as err:
        print(f"make hil: rig file {rig} refused (nothing was run):", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    reports = args.reports or ROOT / "reports/hil" / f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]', '_', rig.stem)}"
    reports.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the run as Ctrl-C does: pytest tears the bench down (stops what the virtual rig started).
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ["MYNABOX_RIG"] = str(rig)
    os.environ["MYNABOX_HIL_REPORTS"] = str(reports.resolve())
    code = pytest.main(
        [
            str(ROOT / "tests/hil"),
            "-m",
            "hil",
            "-p",
            "no:cacheprovider",
            f"--junitxml={reports / 'report.xml'}",
            "-o",
            "junit_family=xunit2",
            "-rs",
            *args.pytest_args,
        ]
    )
    print(f"\nreports: {reports}/report.html (open in a browser), report.json, report.xml")
    return 0 if code == 0 else 2 if code == pytest.ExitCode.USAGE_ERROR else 1


def _interrupt(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
