"""Text from outside (RAUC, a bundle, a result file) made safe to print.

A module of its own: the daemon reads the last update's result and need not load the `rauc status` parser.
"""

from __future__ import annotations

MAX_TEXT = 120


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """Control characters (terminal escapes) replaced, length bounded."""
    clean = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return clean if len(clean) <= limit else clean[:limit] + "…"
