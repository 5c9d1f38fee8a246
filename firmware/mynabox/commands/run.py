"""`mynabox run`: the daemon systemd starts (Type=notify). SIGTERM stops it cleanly, exit 0.

A config, key or certificate that cannot be used exits 78 (EX_CONFIG) with the problems listed and no
traceback: the unit's RestartPreventExitStatus=78 keeps systemd from restarting it into the same failure.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the daemon's command line is parsed without argparse (cli._daemon_command)
    import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="config file (default $MYNABOX_CONFIG or /etc/mynabox/config.toml)"
    )


def run(args: argparse.Namespace) -> int:
    from mynabox.cli import EXIT_CONFIG
    from mynabox.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=config.log.level.number,
        stream=sys.stderr,  # journald adds time and unit; no patient data is ever logged
        format="%(levelname)s %(name)s: %(message)s",
    )
    from mynabox.adapters.mqtt import LinkConfigError
    from mynabox.adapters.panel import PinMapError
    from mynabox.adapters.summary_client import SummaryClientConfigError
    from mynabox.payload.keys import KeyFileError
    from mynabox.wiring import run_box

    shutdown = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: shutdown.set())
    signal.signal(signal.SIGINT, lambda *_: shutdown.set())
    try:
        return run_box(config, shutdown)
    except (KeyFileError, LinkConfigError, SummaryClientConfigError, PinMapError) as err:
        # The config check passed but a file changed since, or a library refused what we accepted.
        logging.getLogger("mynabox").error("the box could not start: %s", err)  # names files, never contents
        return EXIT_CONFIG
    except Exception:
        logging.getLogger("mynabox").exception("the box could not start")
        return 1
