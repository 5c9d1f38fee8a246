"""RAUC's system.conf as the update commands read it: the board, the slots' devices, the streaming user.

Pure: the file's text in. configparser's own errors pass through (the commands report them); what is
missing for a decision ends in BundleRefused.
"""

from __future__ import annotations

import configparser

from mynabox.update.bundle import BundleRefused


def parse(text: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(interpolation=None, strict=False)
    conf.read_string(text)
    return conf


def compatible(conf: configparser.ConfigParser) -> str:
    return conf.get("system", "compatible")


def other_slot_device(conf: configparser.ConfigParser, booted: str | None) -> str:
    """The device of the root slot that is not booted (the one an install writes)."""
    others = [
        conf.get(name, "device", fallback="")
        for name in conf.sections()
        if name.startswith("slot.rootfs.") and conf.get(name, "bootname", fallback=None) != booted
    ]
    if booted is None or len(others) != 1 or not others[0]:
        raise BundleRefused("the slot just written cannot be told from the booted one (rauc.slot=)")
    return others[0]
