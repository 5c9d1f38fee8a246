"""The daemon's command line, read without argparse, means what argparse would have made of it."""

from __future__ import annotations

import pytest

from mynabox import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "--config", "/etc/mynabox/config.toml"],
        ["run", "--config=box.toml"],
        ["run", "--config", "x y"],
    ],
)
def test_the_units_spellings_parse_as_argparse_parses_them(argv: list[str]) -> None:
    fast = cli._daemon_command(argv)
    assert fast is not None
    run, args = cli._parse(argv, "run")
    assert fast[0] is run
    assert (fast[1].command, fast[1].config) == (args.command, args.config)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--help"],
        ["run", "--conf", "x"],  # an abbreviation: argparse's to accept
        ["run", "--config"],
        ["run", "--config", "-x"],
        ["run", "--config="],
        ["run", "--config", "a", "b"],
        ["read"],
        ["--help"],
    ],
)
def test_any_other_line_goes_to_argparse(argv: list[str]) -> None:
    assert cli._daemon_command(argv) is None
