"""Fuzz target: the health check's reading of `mynabox selftest` after a boot (update/health.py), as
`update health` feeds it (the self-test's stdout decoded UTF-8 with replacement, and its exit code).

Input: a byte for the exit code, then the output. ``selftest_verdict`` never raises; its reason is bounded
and printable (it goes into the kept result and the log); a pass means every required part said ok.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.update.health import REQUIRED, selftest_verdict

    def one_input(data: bytes) -> None:
        code = data[0] - 128 if data else 0
        output = data[1:].decode("utf-8", "replace")
        passed, why = selftest_verdict(output, code)
        assert len(why) <= 201 and why.isprintable(), why
        assert passed == (why == "")
        if passed:
            lines = {line.rstrip() for line in output.splitlines()}
            assert all(any(line.startswith(f"ok   {name}") for line in lines) for name in REQUIRED)

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
