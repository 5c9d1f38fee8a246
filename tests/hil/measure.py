"""Measurements with limits and a marginal band (OpenHTF's idea): a value inside its limits but near one
passes as *marginal*, so the workshop sees a reader or a network drifting before a box fails."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# name: (unit, low, high, marginal_low, marginal_high, what it is). A rig's [limits.NAME] overrides.
DEFAULT_LIMITS: dict[str, tuple[str, float | None, float | None, float | None, float | None, str]] = {
    "card_read_ms": ("ms", None, 1000.0, None, 600.0, "JPKI certificate read, first APDU to last"),
    "apdus_per_read": ("APDUs", 1.0, 10.0, None, 7.0, "APDUs of one read (3 extended, 2+len/256 short)"),
    "tap_to_result_ms": ("ms", None, 3000.0, None, 2000.0, "card present to the result on the OLED"),
    "start_to_ready_ms": ("ms", None, 5000.0, None, 3000.0, "box start to READY (in-process)"),
    "broker_round_trip_ms": ("ms", None, 1000.0, None, 500.0, "publish to PUBACK, box's certificate"),
    "gateway_open_ms": ("ms", None, 3000.0, None, 1500.0, "publish to opened by the gateway side"),
    # A trial boot's early watchdog (mynabox-boot.cmd) must be taken over by the driver before it fires.
    "kernel_to_bcm2835_wdt_s": (
        "s",
        None,
        12.0,
        None,
        8.0,
        "kernel start to bcm2835_wdt (PM watchdog: 15 s)",
    ),
    "kernel_to_i6300esb_s": ("s", None, 100.0, None, 60.0, "kernel start to the i6300esb's driver (120 s)"),
}


@dataclass
class Measurement:
    name: str
    value: float
    unit: str
    low: float | None
    high: float | None
    marginal_low: float | None
    marginal_high: float | None
    outcome: str  # pass | marginal | fail
    test: str
    what: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"limit": self.limit()}

    def limit(self) -> str:
        """The limits as the technician reads them beside the value: "≤ 1000 ms (marginal above 600)"."""
        unit = f" {self.unit}"
        if self.low is not None and self.high is not None:
            text = f"{self.low:g}–{self.high:g}{unit}"
        elif self.high is not None:
            text = f"≤ {self.high:g}{unit}"
        elif self.low is not None:
            text = f"≥ {self.low:g}{unit}"
        else:
            text = "no limit"
        marginal = [
            f"{label} {v:g}"
            for label, v in (("below", self.marginal_low), ("above", self.marginal_high))
            if v is not None
        ]
        return f"{text} (marginal {' or '.join(marginal)})" if marginal else text

    def describe(self) -> str:
        return f"{self.name} = {self.value:g} {self.unit} ({self.outcome}; limit {self.limit()}): {self.what}"


def judge(
    name: str, value: float, test: str, overrides: dict[str, dict[str, float]] | None = None
) -> Measurement:
    unit, low, high, m_low, m_high, what = DEFAULT_LIMITS[name]
    over = (overrides or {}).get(name, {})
    low, high = over.get("low", low), over.get("high", high)
    m_low, m_high = over.get("marginal_low", m_low), over.get("marginal_high", m_high)
    if (low is not None and value < low) or (high is not None and value > high):
        outcome = "fail"
    elif (m_low is not None and value < m_low) or (m_high is not None and value > m_high):
        outcome = "marginal"
    else:
        outcome = "pass"
    return Measurement(name, round(value, 3), unit, low, high, m_low, m_high, outcome, test, what)
