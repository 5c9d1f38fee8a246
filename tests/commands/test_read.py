"""`mynabox read`'s exit codes: one for each failure of `card.errors.read_failure` (the runs on a real
pcscd are in tests/integration/test_card_stack.py)."""

from __future__ import annotations

from mynabox.commands import read
from mynabox.vocab import ReadFailure


def test_every_read_failure_has_its_own_exit_code_and_outcome() -> None:
    assert set(read.FAILURE_EXITS) == set(ReadFailure)
    codes = [code for code, _ in read.FAILURE_EXITS.values()]
    assert len(set(codes)) == len(codes) and read.EXIT_OK not in codes and read.EXIT_TIMEOUT not in codes
    outcomes = {failure: outcome for failure, (_, outcome) in read.FAILURE_EXITS.items()}
    assert outcomes[ReadFailure.UNRESPONSIVE] == "card-unresponsive"  # what the daemon's audit says too
    assert outcomes[ReadFailure.NOT_MY_NUMBER_CARD] == ReadFailure.NOT_MY_NUMBER_CARD.value
