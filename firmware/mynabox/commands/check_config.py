"""`mynabox check-config`: print the config with secrets masked (exit 0), or every problem (exit 78).

With file checks (the default) every file the config names is read as the daemon will read it: TLS CAs,
certificates and keys parsed and each key matched to its certificate, envelope and audit keys, and who may
read or replace them. Run it as root on the box (with MYNABOX_CREDENTIALS_DIR=/etc/mynabox/credentials, the
store systemd's LoadCredential= copies from) or as the service would see them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from mynabox.cli import EXIT_CONFIG

EXIT_INVALID = EXIT_CONFIG  # the daemon's code for the same problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="config file (default $MYNABOX_CONFIG or /etc/mynabox/config.toml)"
    )
    parser.add_argument(
        "--no-file-checks",
        action="store_true",
        help="do not require the certificate, key and credential files to exist (e.g. on a build host)",
    )


def run(args: argparse.Namespace) -> int:
    from mynabox.config import ConfigError, default_path, load_config
    from mynabox.config.fields import may_be_secret

    path = args.config or default_path()
    try:
        config = load_config(path, check_files=not args.no_file_checks)
    except ConfigError as err:
        print(f"{err.source}: {len(err.issues)} problem(s)", file=sys.stderr)
        for issue in err.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_INVALID
    print(f"# {path}: OK" + (" (files not checked)" if args.no_file_checks else ""))
    _print_table(config.masked_dict(), hide=may_be_secret)
    return 0


def _print_table(data: dict[str, object], *, hide: Callable[[str], bool]) -> None:
    """TOML-looking output; unset keys are shown as comments, values that could be key material not at all."""
    for key, value in data.items():
        if not isinstance(value, dict):
            print(_line(key, value, hide))
    for section, table in data.items():
        if isinstance(table, dict):
            print(f"\n[{section}]")
            for key, value in table.items():
                print(_line(key, value, hide))


def _line(key: str, value: object, hide: Callable[[str], bool]) -> str:
    if value is None:
        return f"# {key} = (unset)"
    if isinstance(value, str) and hide(value):
        return f"# {key} = (not shown: it could be key material)"
    if key == "i2c_address" and isinstance(value, int):
        return f"{key} = {value:#04x}"
    return f"{key} = {_value(value)}"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> int:
    parser = argparse.ArgumentParser(prog="mynabox check-config", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
