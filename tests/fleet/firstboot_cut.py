"""`mynabox firstboot` that dies by SIGKILL at one checkpoint: a power cut at a known step, for the tests.

python tests/fleet/firstboot_cut.py CHECKPOINT [firstboot's arguments]

The shipped command has no such hook: the test passes the checkpoint in, as `run`'s seam, and the process
really dies there (nothing after it runs, no handler, no flush), as it would when the power goes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from mynabox.commands import firstboot

REACHED = 97  # exit status when the run ended without passing the checkpoint


def main() -> int:
    cut = sys.argv[1]
    parser = argparse.ArgumentParser(prog="firstboot_cut")
    firstboot.add_arguments(parser)
    args = parser.parse_args(sys.argv[2:])

    def checkpoint(name: str) -> None:
        if name == cut:
            os.kill(os.getpid(), signal.SIGKILL)

    firstboot.run(args, checkpoint)
    return REACHED


if __name__ == "__main__":
    sys.exit(main())
