"""The written contract's schemas (docs/gateway/schemas) as validators, resolved from the files themselves.

Relative ``$ref``s are resolved against the schema directory, never fetched. ``strict`` validators refuse a
number with a fraction where the contract says integer (``5.0``): JSON Schema's own integer type admits it
(a stock validator does), so the claims must be parsed with integers kept apart from floats, as Python's
``json`` does.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

GATEWAY = Path(__file__).resolve().parents[2] / "docs" / "gateway"
SCHEMAS = GATEWAY / "schemas"
BODY_SCHEMA = {"summary": "summary-message", "card-record": "card-record", "audit": "audit-message"}


def _retrieve(uri: str) -> Resource[Any]:
    """Only files of the schema directory, by their file URI: nothing is fetched."""
    prefix = SCHEMAS.as_uri() + "/"
    name = uri.removeprefix(prefix)
    if not uri.startswith(prefix) or "/" in name or not (SCHEMAS / name).is_file():
        raise LookupError(f"not a schema of the contract: {uri}")
    # Without its $schema: jsonschema would check that file with the stock integer type (5.0 passes).
    doc = {k: v for k, v in load(name.removesuffix(".schema.json")).items() if k != "$schema"}
    return Resource.from_contents(doc, default_specification=DRAFT202012)


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


# --- the AsyncAPI document, as the stock parser reads it -------------------------------------------------

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"


def strict(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a dereferenced schema (no $ref left), integers strict. The inlined files' ``$schema``
    and ``$id`` go: with them jsonschema would validate those parts with the stock integer type again."""
    out: Draft202012Validator = _STRICT(_bare(schema), format_checker=FormatChecker())
    return out


def _bare(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _bare(v) for k, v in node.items() if k not in ("$schema", "$id")}
    if isinstance(node, list):
        return [_bare(v) for v in node]
    return node


@functools.cache
def asyncapi() -> dict[str, Any]:
    """docs/gateway/asyncapi.yaml parsed by @asyncapi/parser (offline): per message its channel addresses,
    content type and the dereferenced schemas of its wire payload and opened claims."""
    node = shutil.which("node")
    assert node and (NODE_DIR / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "scripts/install-deps.sh runs npm ci in tests/interop/node"
    )
    done = subprocess.run(
        [node, str(NODE_DIR / "asyncapi.mjs"), str(GATEWAY / "asyncapi.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def wire_problems(leaf: str, payload: bytes, claims: dict[str, Any] | None = None) -> list[str]:
    """Why ``payload`` as sent on ``mynabox/<device>/<leaf>`` (and, for a sealed one, its opened ``claims``)
    fits no message of that channel in the AsyncAPI document; [] when one fits."""
    address = f"mynabox/{{device}}/{leaf}"
    candidates = [m for m in asyncapi()["messages"].values() if address in m["channels"]]
    if not candidates:
        return [f"no message on {address}"]
    problems = []
    for message in candidates:
        try:
            text = payload.decode("utf-8")
            value = json.loads(text) if message["contentType"] == "application/json" else text
        except ValueError as err:
            problems.append(f"{message['contentType']}: {err}")
            continue
        errors = [e.message for e in strict(message["payload"]).iter_errors(value)]
        if claims is not None and message["opened"] is not None:
            errors += [e.message[:200] for e in strict(message["opened"]).iter_errors(claims)]
        if not errors:
            return []
        problems += errors
    return problems
