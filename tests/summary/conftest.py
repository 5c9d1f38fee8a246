"""Fixtures for the summary tests: the published JSON Schema and a small checker for it.

jsonschema is not a dependency, so `schema_errors` implements the subset of draft 2020-12 that
summary.schema.json uses (type, const, enum, properties, required, additionalProperties, items, maxItems,
minLength, maxLength, pattern, minimum, maximum, anyOf, $ref, format date). An unknown keyword is an error,
so the schema cannot quietly outgrow the checker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from importlib import resources
from typing import Any

import pytest

_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(schema: dict[str, Any], value: object, path: str, root: dict[str, Any], errors: list[str]) -> None:
    for key, arg in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "$ref":
            target: Any = root
            for part in arg.removeprefix("#/").split("/"):
                target = target[part]
            _check(target, value, path, root, errors)
        elif key == "type":
            if not _TYPES[arg](value):
                errors.append(f"{path}: not {arg}")
                return
        elif key == "const":
            if value != arg or type(value) is not type(arg):
                errors.append(f"{path}: not const")
        elif key == "enum":
            if not any(value == a and type(value) is type(a) for a in arg):
                errors.append(f"{path}: not in enum")
        elif key == "anyOf":
            if not any(not _errors(sub, value, path, root) for sub in arg):
                errors.append(f"{path}: matches none of anyOf")
        elif key == "properties":
            if isinstance(value, dict):
                for name, sub in arg.items():
                    if name in value:
                        _check(sub, value[name], f"{path}.{name}", root, errors)
        elif key == "required":
            if isinstance(value, dict):
                errors.extend(f"{path}.{name}: missing" for name in arg if name not in value)
        elif key == "additionalProperties":
            if isinstance(value, dict) and arg is False:
                allowed = schema.get("properties", {})
                errors.extend(f"{path}: extra key" for name in value if name not in allowed)
        elif key == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    _check(arg, item, f"{path}[{i}]", root, errors)
        elif key == "maxItems":
            if isinstance(value, list) and len(value) > arg:
                errors.append(f"{path}: too many items")
        elif key == "minLength":
            if isinstance(value, str) and len(value) < arg:
                errors.append(f"{path}: too short")
        elif key == "maxLength":
            if isinstance(value, str) and len(value) > arg:
                errors.append(f"{path}: too long")
        elif key == "pattern":
            # ECMA-262 `$` never matches before a final newline; Python's does unless it is `\Z`.
            if isinstance(value, str) and not re.search(arg.replace("$", r"\Z"), value):
                errors.append(f"{path}: pattern")
        elif key == "minimum":
            if isinstance(value, int) and value < arg:
                errors.append(f"{path}: below minimum")
        elif key == "maximum":
            if isinstance(value, int) and value > arg:
                errors.append(f"{path}: above maximum")
        elif key == "format":
            if arg != "date":
                raise AssertionError(f"format {arg} not supported by the checker")
            if isinstance(value, str):
                try:
                    date.fromisoformat(value)
                except ValueError:
                    errors.append(f"{path}: not a date")
        else:
            raise AssertionError(f"schema keyword {key} not supported by the checker")


def _errors(schema: dict[str, Any], value: object, path: str, root: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    _check(schema, value, path, root, errors)
    return errors


@pytest.fixture(scope="session")
def summary_schema() -> dict[str, Any]:
    text = resources.files("mynabox").joinpath("data", "summary.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@pytest.fixture(scope="session")
def schema_errors(summary_schema: dict[str, Any]) -> Callable[[object], list[str]]:
    """Validate a document against the published schema; returns the list of violations."""

    def check(doc: object) -> list[str]:
        return _errors(summary_schema, doc, "$", summary_schema)

    return check
