"""Root test configuration shared by every area."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI machines have 2 cores shared with the real stack's processes: give hypothesis room, keep it repeatable.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
