"""`read_failure`: the one mapping of the card path's errors to what the read's failure is."""

from __future__ import annotations

import pytest

from mynabox.card import errors
from mynabox.vocab import ReadFailure


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (errors.NotMyNumberCard("JPKI AP not selectable"), ReadFailure.NOT_MY_NUMBER_CARD),
        (errors.CardRemoved("transmit: removed"), ReadFailure.REMOVED),
        (errors.CardUnresponsive("transmit: no answer"), ReadFailure.UNRESPONSIVE),
        (errors.ReadTimeout("no answer by the deadline"), ReadFailure.UNRESPONSIVE),
        (errors.MalformedResponse("bad DER"), ReadFailure.MALFORMED),
        (errors.FileNotFound(0x6A82, "file not found", "SELECT"), ReadFailure.MALFORMED),
        (errors.SecurityStatusNotSatisfied(0x6982, "security", "READ"), ReadFailure.MALFORMED),
        (errors.ProtocolError("out of spec"), ReadFailure.MALFORMED),
        (errors.ReaderGone("reader unplugged"), ReadFailure.READER_ERROR),
        (errors.ServiceGone("no pcscd"), ReadFailure.READER_ERROR),
        (errors.TransportError("link failed"), ReadFailure.READER_ERROR),
        (errors.CardError("anything else of the card path"), ReadFailure.READER_ERROR),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_each_card_error_maps_to_one_failure(error: errors.CardError, failure: ReadFailure) -> None:
    assert errors.read_failure(error) is failure


def test_every_failure_is_reachable_and_every_error_class_is_covered() -> None:
    """A new error class or failure must be placed in the mapping (and in the table above) on purpose."""
    classes = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CardError)}
    assert len(classes) == 20
    assert set(ReadFailure) == {
        errors.read_failure(c("x") if not issubclass(c, errors.StatusWordError) else c(0x6F00, "x", "x"))
        for c in classes
    }
