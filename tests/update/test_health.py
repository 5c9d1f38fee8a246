"""The health check's reading of `mynabox selftest`: required parts only; a missing network is no failure."""

from __future__ import annotations

from mynabox.update.health import selftest_verdict

PARTS = ("config: /etc/mynabox/config.toml", "reader", "display", "panel", "outbox", "disk")
ALL_OK = "".join(f"ok   {name}\n" for name in PARTS)


def test_required_parts_pass_and_the_network_may_be_away() -> None:
    text = ALL_OK + "FAIL clock: not synced\nFAIL summary service: timed out\nFAIL broker: refused\n"
    assert selftest_verdict(text, 1) == (True, "")


def test_a_failed_or_missing_required_part_fails_with_its_reason() -> None:
    assert selftest_verdict(ALL_OK.replace("ok   reader", "FAIL reader: no reader matches 'ACS'"), 1) == (
        False,
        "reader: no reader matches 'ACS'",
    )
    passed, why = selftest_verdict("Traceback (most recent call last):\n", 1)
    assert not passed and "said nothing about config, reader, display, panel, outbox, disk (exit 1)" in why
    passed, why = selftest_verdict(ALL_OK.replace("ok   disk", "FAIL disk: \x1b[2J full"), 1)
    assert not passed and "\x1b" not in why
