"""Fuzz target: the config file (config/load.py) as TOML text.

Input: the file's bytes. Not UTF-8 is refused as load_config does; otherwise ``parse_config`` may only
return a Config or raise ConfigError (files are not opened: ``check_files=False``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.config.load import parse_config
    from mynabox.config.model import ConfigError

    source = Path("/nonexistent/mynabox/config.toml")

    def one_input(data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        try:
            parse_config(text, source=source, environ={}, check_files=False)
        except ConfigError as err:
            str(err)

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
