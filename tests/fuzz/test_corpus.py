"""Every file of the fuzz corpus through its target, uninstrumented, in the normal test run.

The corpus holds the seeds (make_corpus.py) and the inputs of crashes found and fixed (named ``crash-*``):
each one is a regression test. A target raising anything but the refusals it catches fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from harness import CORPUS, load, targets

CASES = [(t, f) for t in targets() for f in sorted((CORPUS / t).iterdir())]


@cache
def target(name: str) -> Callable[[bytes], None]:
    return load(name)


def test_every_target_has_a_corpus() -> None:
    assert targets()
    for name in targets():
        assert any((CORPUS / name).iterdir()), f"corpus/{name} is empty"


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{t}/{f.name}" for t, f in CASES])
def test_corpus_input_is_handled(name: str, path: Path) -> None:
    target(name)(path.read_bytes())
