"""The written contract's schemas (docs/gateway/schemas) as validators, resolved from the files themselves.

Relative ``$ref``s are resolved against the schema directory, never fetched. ``strict`` validators refuse a
number with a fraction where the contract says integer (``5.0``): JSON Schema's own integer type admits it
(a stock validator does), so the claims must be parsed with integers kept apart from floats, as Python's
``json`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.validators import extend
from referencing import Registry, Resource

GATEWAY = Path(__file__).resolve().parents[2] / "docs" / "gateway"
SCHEMAS = GATEWAY / "schemas"
BODY_SCHEMA = {"summary": "summary-message", "card-record": "card-record", "audit": "audit-message"}


def _retrieve(uri: str) -> Resource[Any]:
    """Only files of the schema directory, by their file URI: nothing is fetched."""
    prefix = SCHEMAS.as_uri() + "/"
    name = uri.removeprefix(prefix)
    if not uri.startswith(prefix) or "/" in name or not (SCHEMAS / name).is_file():
        raise LookupError(f"not a schema of the contract: {uri}")
    return Resource.from_contents(load(name.removesuffix(".schema.json")))


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    return doc


def _int_only(_checker: object, instance: object) -> bool:
    return type(instance) is int


_STRICT = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _int_only),
)


def validator(name: str, *, strict: bool = True) -> Draft202012Validator:
    """``name`` without ``.schema.json``; ``strict=False`` is what a stock validator does."""
    doc = load(name)
    Draft202012Validator.check_schema(doc)
    # Resolved from its own file, as a tool reading docs/gateway/ would.
    doc = {"$id": (SCHEMAS / f"{name}.schema.json").as_uri(), **doc}
    registry: Registry[Any] = Registry(retrieve=_retrieve)
    cls = _STRICT if strict else Draft202012Validator
    out: Draft202012Validator = cls(doc, registry=registry, format_checker=FormatChecker())
    return out
