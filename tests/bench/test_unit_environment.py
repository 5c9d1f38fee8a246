"""The benchmarks run the daemon (and price the floor) under the unit's Environment= settings, so the memory
figures are those of the process systemd starts on the box."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_imports import UNIT, unit_environment


def test_the_bench_takes_every_environment_setting_of_the_unit() -> None:
    assignments = [
        assignment
        for line in UNIT.read_text().splitlines()
        if line.startswith("Environment=")
        for assignment in shlex.split(line.removeprefix("Environment="))
    ]
    assert unit_environment() == dict(a.split("=", 1) for a in assignments)
    assert unit_environment()["MALLOC_ARENA_MAX"] == "2"  # the allocator lever the memory figures rely on
