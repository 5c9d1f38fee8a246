"""Each bench check's name as the technician reads it: what it proved ("button 同意: press seen"), not the
test function's name. A check gives it with `@pytest.mark.check(TITLE)`: a str formatted with the test's
parameters, or a callable of them; a check without one keeps pytest's name (so a new check shows up, named
badly, rather than not at all)."""

from __future__ import annotations

from typing import Any

import pytest

from mynabox.commands.selftest import BUTTONS, LED_LOOKS
from mynabox.core.effects import Tone
from mynabox.render.catalog import catalog


def check_name(item: pytest.Item) -> str:
    params: dict[str, Any] = dict(getattr(getattr(item, "callspec", None), "params", {}))
    mark = item.get_closest_marker("check")
    if mark is not None and mark.args:
        title = mark.args[0]
        if callable(title):
            return str(title(**params))
        return str(title).format(**params)
    if params:  # pytest escapes non-ASCII in ids; the parameters as given read better
        return f"{getattr(item, 'originalname', item.name)}[{', '.join(map(str, params.values()))}]"
    return item.name


def screen_check(name: str) -> str:
    """ "OLED: 読取中 screen (reading)": the screen's header as on the sheet, then its catalog name."""
    return f"OLED: {catalog()[name].header} screen ({name})"


def _panel_titles() -> dict[str, str]:
    from mynabox.adapters.panel import TONES

    titles = {f"button {label}": f"button {label.split(' ')[0]}: press seen" for label, _ in BUTTONS}
    titles["both-buttons clear"] = "buttons 同意 + 緊急 held together: clear seen"
    titles |= {f"LED {mode.value}": f"LED {mode.value}: looks {looks}" for mode, looks in LED_LOOKS.items()}
    for tone in Tone:
        on, _off, times = TONES[tone]
        titles[f"buzzer {tone.value}"] = (
            f"buzzer '{tone.value}': {times} beep{'s' if times > 1 else ''} of {on:g} s heard"
        )
    return titles


def panel_check(step: str) -> str:
    return _panel_titles().get(step, step)
