"""Device-supplied text made harmless for whoever reads it at the gateway: a terminal or a page."""

from __future__ import annotations

import unicodedata
from html import escape

# Shown as escapes: controls (C0, DEL, C1), format characters (bidi overrides and isolates, zero widths,
# soft hyphen, BOM, tags), surrogates, private use, unassigned, and line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def visible(text: str) -> str:
    """``text`` safe for a terminal: invisible or controlling characters as ``\\uXXXX``, ``\\`` doubled."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _ESCAPED_CATEGORIES:
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def html_text(value: object) -> str:
    """``value`` for an HTML page: made visible as above, then escaped."""
    return escape(visible(str(value)), quote=True)
