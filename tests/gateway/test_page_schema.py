"""Hostile text in every string field a device can send, found by walking the bodies' JSON schemas (a field
added to a schema is tested without anyone listing it): no markup of the text may survive in a page or list.

Each case renders the page twice, with markup and with inert text at the same place, and compares the element
structure (tags, attribute names, comments): markup that got through adds to it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mynabox.gateway.page import entry_for, render_index, render_page
from mynabox.payload.envelope import Kind
from mynabox.summary.model import Summary

from .conftest import NOW, seal_and_open

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "gateway" / "schemas"
Path_ = tuple[str | int, ...]


def _registry() -> dict[str, Any]:
    """The contract's schemas by file name: their $refs are relative to the schema directory."""
    return {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}


REGISTRY = _registry()
BODIES = {
    Kind.SUMMARY: "summary-message.schema.json",
    Kind.CARD_RECORD: "card-record.schema.json",
}


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    while "$ref" in node:
        ref = node["$ref"]
        base, _, fragment = ref.partition("#")
        root = REGISTRY[base] if base else root
        node = root
        for part in filter(None, fragment.split("/")):
            node = node[part]
    return node, root


def _then(node: dict[str, Any]) -> dict[str, Any]:
    """An object whose item types hang on a code (``allOf`` of ``if``/``then``, the flags): the branch of the
    code that ``example`` picks (the first), its ``then`` merged into the properties."""
    props = node.get("properties", {})
    code = props.get("code", {})
    chosen = code.get("enum", [code.get("const")])[0]
    for cond in node.get("allOf", []):
        want = cond.get("if", {}).get("properties", {}).get("code", {})
        if chosen in want.get("enum", [want.get("const")]):
            merged = dict(props)
            for key, extra in cond.get("then", {}).get("properties", {}).items():
                merged[key] = {**merged.get(key, {}), **extra}
            return {**node, "properties": merged}
    return node


def _types(node: dict[str, Any]) -> set[str]:
    kind = node.get("type")
    if isinstance(kind, list):
        return set(kind)
    if kind is not None:
        return {kind}
    if "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        return {type(v).__name__.replace("str", "string") for v in values}
    return set()


def _string_example(node: dict[str, Any]) -> str:
    pattern = node.get("pattern", "")
    if node.get("format") == "date" or pattern.startswith("^[0-9]{4}-"):
        return "2026-03-01"
    if node.get("format") == "date-time":
        return NOW.isoformat()
    if "[0-9]{6}" in pattern:
        return "12345678"  # 保険者番号
    if "[0-9A-Z]{8}" in pattern:
        return "3332001F1020"  # YJ code
    if node.get("contentEncoding") == "base64":
        return "AAAA"
    return "x"


def example(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """A valid instance with every optional property present and one item in every list."""
    node, root = _resolve(node, root)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if _resolve(b, root)[0].get("type") != "null"]
        return example(branches[0], root)
    types = _types(node) - {"null"}
    if "object" in types:
        return {k: example(v, root) for k, v in _then(node).get("properties", {}).items()}
    if "array" in types:
        return [example(node["items"], root)] if "items" in node else []
    if "string" in types:
        return _string_example(node)
    if "integer" in types:
        return node.get("minimum", 1)
    if "boolean" in types:
        return False
    raise AssertionError(f"no example for {node}")


def string_paths(node: dict[str, Any], root: dict[str, Any], at: Path_ = ()) -> Iterator[Path_]:
    """Every place a string may stand (a string type, an enum of strings, a branch that is one)."""
    node, root = _resolve(node, root)
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        yield from string_paths(branch, root, at)
    types = _types(node)
    if "string" in types:
        yield at
    if "object" in types:
        for key, child in _then(node).get("properties", {}).items():
            yield from string_paths(child, root, (*at, key))
    if "array" in types and "items" in node:
        yield from string_paths(node["items"], root, (*at, 0))


def _put(doc: Any, at: Path_, value: str) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for part in at[:-1]:
        target = target[part]
    target[at[-1]] = value
    return doc


CASES = [
    (kind, at)
    for kind, schema_id in BODIES.items()
    for at in dict.fromkeys(string_paths(REGISTRY[schema_id], REGISTRY[schema_id]))
]
HOSTILE = [
    '<img src=x onerror="alert(1)" data-injected>',
    '"><x-injected a=1>',
    "</td></tr></table></section><x-injected>",
    "'><style>*{display:none}</style>",
    "<!--x-injected--><![CDATA[x]]>",
    "&lt;x-injected&gt; &#60;b&#62;",
]


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[tuple[str, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append((tag, *sorted(name for name, _ in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.items.append(("/" + tag,))

    def handle_comment(self, data: str) -> None:
        self.items.append(("!--",))

    def unknown_decl(self, data: str) -> None:
        self.items.append(("<!",))


def _structure(html: str) -> list[tuple[str, ...]]:
    parser = _Structure()
    parser.feed(html)
    parser.close()
    return parser.items


def _pages(kind: Kind, body: dict[str, Any]) -> list[str]:
    opened = seal_and_open(kind, body)
    return [render_page(opened), render_index([entry_for(opened, NOW)], hours=24)]


def test_the_walk_finds_the_fields_a_page_shows() -> None:
    paths = {at for kind, at in CASES if kind == Kind.SUMMARY}
    assert ("summary", "allergies", "allergies", 0, "substance") in paths
    assert ("summary", "medications", 0, "pharmacy") in paths
    assert ("read", "consent") in paths and ("read", "certificate_check", "status") in paths
    assert len(CASES) >= 50, len(CASES)
    for kind, schema_id in BODIES.items():  # the examples are valid: hostile text lands in a rendered page
        body = example(REGISTRY[schema_id], REGISTRY[schema_id])
        if kind == Kind.SUMMARY:
            Summary.from_json(body["summary"])
            assert "形式を読み取れません" not in render_page(seal_and_open(kind, body))


@pytest.mark.parametrize(("kind", "at"), CASES, ids=[f"{k.value}:{'.'.join(map(str, a))}" for k, a in CASES])
def test_no_markup_from_any_field_survives(kind: Kind, at: Path_) -> None:
    schema = REGISTRY[BODIES[kind]]
    body = example(schema, schema)
    inert = [_structure(html) for html in _pages(kind, _put(body, at, "inert"))]
    for value in HOSTILE:
        hostile = [_structure(html) for html in _pages(kind, _put(body, at, value))]
        assert hostile == inert, f"markup from {'.'.join(map(str, at))} got into the page: {value!r}"
