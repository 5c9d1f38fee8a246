"""The `mynabox` command: a thin dispatcher to one module per subcommand.

Each subcommand lives in `mynabox.commands.<name>` and exposes `add_arguments(parser)` and
`run(args) -> int`. Only the chosen subcommand's module is imported, so `mynabox read` never
loads paho or luma.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

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
    chosen = next((a for a in args_in if not a.startswith("-")), None)
    if chosen in NEEDS_TESTKIT and importlib.util.find_spec("mynabox_testkit") is None:
        print(
            f"mynabox {chosen}: the test kit is not installed (it is not part of the box); "
            "developers install it with `pip install ./testkit` from the source tree",
            file=sys.stderr,
        )
        return EXIT_NO_TESTKIT
    command = _daemon_command(args_in) or _parse(args_in, chosen)
    try:
        result: int = command[0](command[1])
    except Exception as err:
        from mynabox.config import ConfigError  # only when needed: `mynabox read` stays light

        if not isinstance(err, ConfigError):
            raise
        print(err, file=sys.stderr)
        return EXIT_CONFIG
    return result


def _daemon_command(args_in: list[str]) -> tuple[Callable[[Any], int], Any] | None:
    """The unit's own command line, `run [--config PATH]`, parsed without argparse.

    argparse (and the gettext it imports) would stay loaded for the daemon's lifetime: 0.35 MB of a box's RAM
    for a line that never changes. Anything else (--help, another spelling, a mistake) goes to argparse.
    """
    from pathlib import Path

    match args_in:
        case ["run"]:
            config = None
        case ["run", "--config", value] if value and not value.startswith("-"):
            config = Path(value)
        case ["run", option] if option.startswith("--config=") and len(option) > len("--config="):
            config = Path(option.removeprefix("--config="))
        case _:
            return None
    from mynabox.commands import run

    return run.run, SimpleNamespace(command="run", config=config)


def _parse(args_in: list[str], chosen: str | None) -> tuple[Callable[[Any], int], Any]:
    import argparse

    parser = argparse.ArgumentParser(prog="mynabox", description="マイナ救急 reader box firmware")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    args = parser.parse_args(args_in)
    return args._run, args


if __name__ == "__main__":
    sys.exit(main())
