"""The `mynabox` command: a thin dispatcher to one module per subcommand.

Each subcommand lives in `mynabox.commands.<name>` and exposes `add_arguments(parser)` and
`run(args) -> int`. Only the chosen subcommand's module is imported, so `mynabox read` never
loads paho or luma.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# Exit codes (sysexits.h): a config error is EX_CONFIG, which the unit lists in RestartPreventExitStatus=, so
# systemd does not restart a box whose config or key files are wrong (it would fail the same way forever).
EXIT_CONFIG = 78
# EX_UNAVAILABLE: the command runs the test kit (testkit/, the distribution mynabox-testkit), which developers
# and integrators install beside the firmware and the box's image never carries (it holds test CA keys).
EXIT_NO_TESTKIT = 69
NEEDS_TESTKIT = frozenset({"demo", "vcard", "refsvc", "devbox", "gateway-vectors"})

# name -> (module, one-line help). The order is the order of `mynabox --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("mynabox.commands.run", "run the box (the daemon systemd starts)"),
    "read": ("mynabox.commands.read", "wait for one card, read and check it, print the result"),
    "vcard": ("mynabox.commands.vcard", "run the virtual My Number Card against a vpcd reader"),
    "refsvc": (
        "mynabox.commands.refsvc",
        "run the reference summary service (HTTPS + mTLS) with synthetic patients",
    ),
    "receive": (
        "mynabox.commands.receive",
        "reference gateway receiver: verify, decrypt, dedupe, print the summary in Japanese",
    ),
    "gateway-vectors": (
        "mynabox.commands.vectors",
        "write the gateway contract's test vectors (keys, sealed messages, expected outcomes)",
    ),
    "audit": ("mynabox.commands.audit", "check the audit log's hash chain (audit verify)"),
    "selftest": (
        "mynabox.commands.selftest",
        "check reader, display, outbox, disk, clock, summary service, broker",
    ),
    "screens": ("mynabox.commands.screens", "render every OLED screen to PNG files for review"),
    "check-config": (
        "mynabox.commands.check_config",
        "check the config file and print it with secrets masked",
    ),
    "provision": ("mynabox.commands.provision", "write one vehicle's identity onto a flashed SD card"),
    "devbox": (
        "mynabox.commands.devbox",
        "a box to point a gateway at: daemon, virtual reader, summary service, broker; kept running",
    ),
    "demo": ("mynabox.commands.demo", "run the whole box on this machine with the virtual card (developers)"),
    "firstboot": (
        "mynabox.commands.firstboot",
        "first boot: move the card's identity into the state partition",
    ),
    "update": ("mynabox.commands.update", "field updates: RAUC's bootloader backend, boot state, status"),
    "fleet": ("mynabox.commands.fleet", "fleet ops: every box's version and update result (fleet versions)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="mynabox", description="マイナ救急 reader box firmware")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in args_in if not a.startswith("-")), None)
    if chosen in NEEDS_TESTKIT and importlib.util.find_spec("mynabox_testkit") is None:
        print(
            f"mynabox {chosen}: the test kit is not installed (it is not part of the box); "
            "developers install it with `pip install ./testkit` from the source tree",
            file=sys.stderr,
        )
        return EXIT_NO_TESTKIT
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    args = parser.parse_args(args_in)
    try:
        result: int = args._run(args)
    except Exception as err:
        from mynabox.config import ConfigError  # only when needed: `mynabox read` stays light

        if not isinstance(err, ConfigError):
            raise
        print(err, file=sys.stderr)
        return EXIT_CONFIG
    return result


if __name__ == "__main__":
    sys.exit(main())
