"""Device-supplied text made harmless for whoever reads it at the gateway: a terminal or a page."""

from __future__ import annotations

import unicodedata
from html import escape

# Shown as escapes: controls (C0, DEL, C1), format characters (bidi overrides and isolates, zero widths,
# soft hyphen, BOM, tags), surrogates, private use, unassigned, and line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MARKS = frozenset({"Mn", "Mc", "Me"})
# Combining marks kept on one character after NFC (Japanese composes to none; Vietnamese and Thai need up
# to 3). A stack beyond them is drawn above the line, over whatever is there (a page's flags), so the rest
# of the stack is left out and counted: "[+N]".
MAX_MARKS = 3


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` safe for a terminal: NFC, invisible or controlling characters as ``\\uXXXX``, ``\\`` doubled,
    combining marks past ``MAX_MARKS`` on one character left out and counted."""
    out = []
    marks = 0

    def close_stack() -> None:
        if marks > MAX_MARKS:
            out.append(f"[+{marks - MAX_MARKS}]")

    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category in _MARKS:
            marks += 1
            if marks <= MAX_MARKS:
                out.append(char)
            continue
        close_stack()
        marks = 0
        if char == "\\":
            out.append("\\\\")
        elif category in _ESCAPED_CATEGORIES:
            out.append(_escape(char))
        else:
            out.append(char)
    close_stack()
    return "".join(out)


def html_text(value: object) -> str:
    """``value`` for an HTML page: made visible as above, then escaped."""
    return escape(visible(str(value)), quote=True)
