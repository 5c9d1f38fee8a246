"""`mynabox run`: the daemon systemd starts (Type=notify). SIGTERM stops it cleanly, exit 0."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="config file (default $MYNABOX_CONFIG or /etc/mynabox/config.toml)"
    )


def run(args: argparse.Namespace) -> int:
    from mynabox.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log.level.upper(),
        stream=sys.stderr,  # journald adds time and unit; no patient data is ever logged
        format="%(levelname)s %(name)s: %(message)s",
    )
    from mynabox.wiring import Box

    box = Box(config)
    signal.signal(signal.SIGTERM, lambda *_: box.request_stop())
    signal.signal(signal.SIGINT, lambda *_: box.request_stop())
    try:
        box.start()
        return box.run()
    except Exception:
        logging.getLogger("mynabox").exception("the box could not start")
        return 1
    finally:
        box.stop()
