"""The reference gateway's decision, without MQTT: what an integrator reads to build the real gateway side.

For every message on ``mynabox/+/summary`` and ``mynabox/+/audit``:
1. the topic must be ``mynabox/<device>/<summary|audit>`` (``mynabox.payload.topics``);
2. the envelope must open (``Opener``: known device key, signature, decryption, age) - one opaque error, whose
   reason code goes to the log;
3. the device in the topic (the broker's ACL ties it to the client certificate's CN) must be the device that
   signed, and the kind must belong on that topic;
4. no field of the body may name a device other than the signer (``device-body``: an audit record speaking
   for another box), and the body must be what its kind says (``body``; ``mynabox.payload.bodies``, with
   ``check_bodies``);
5. a message id already seen with the same device and ``seq`` is a duplicate (at-least-once delivery makes
   them): dropped, counted; the same id under another ``seq`` or device is refused (``message-id-reused``);
6. the device's signed sequence number must pass the replay rule, kept per device key, and the key must not
   be retired (``mynabox.gateway.store``);
7. otherwise it is handed to the sink (print, write JSON) and only then remembered as seen (committed to
   disk) and acknowledged.

A refusal at any step remembers nothing: a refused message does not use up its ``seq`` or its id.

No message stops the receiver: every refusal (any exception while deciding, or a sink failure that is not
the gateway's own I/O) is acknowledged, counted and *quarantined*: the sealed bytes, the topic and the reason
stay in the store's ``quarantine`` table for the operator (``mynabox receive --quarantined`` lists them).
A crash between the sink and the commit shows a message twice (the JSON file is named by message id, so it is
rewritten, not doubled).

Log lines carry the topic's device id, the message id and a reason code: never the body. A refusal names the
topic's device (the one the broker authenticated), never a device id from the envelope, which is unproven
until the signature is checked.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from mynabox.payload import topics
from mynabox.payload.bodies import body_problem, device_problem
from mynabox.payload.envelope import EnvelopeError
from mynabox.payload.seal import Opened, Opener
from mynabox.record import record

if TYPE_CHECKING:
    from mynabox.gateway.store import SeenStore

log = logging.getLogger("mynabox.gateway.receiver")  # one name for the operator's filters, in every module

# The gateway's own I/O failing (disk full, store locked): not the message's fault, so it is not
# acknowledged and comes again. Anything else a sink raises was caused by the message: refused.
ENVIRONMENT_ERRORS: tuple[type[Exception], ...] = (OSError, sqlite3.Error)


class ReceiverError(Exception):
    """The receiver cannot run (seen-id store unusable, TLS files, broker refused us)."""


@record
class Accepted:
    opened: Opened


@record
class Duplicate:
    message_id: str
    device_id: str


@record
class Rejected:
    reason: str  # a code: topic, kind-topic, device-topic, or an envelope Reason value


Verdict = Accepted | Duplicate | Rejected


class ReceiverCore:
    """Open, check, dedupe, hand to the sink. ``sink`` runs before the id is remembered (see module doc).

    ``check_bodies``: a gateway that shows or stores bodies (``mynabox receive``) checks each against its
    kind; a relay that only dedupes and forwards the sealed bytes (the fleet's central consumer) may leave
    it off.
    The device a body names is checked either way.
    """

    def __init__(
        self,
        opener: Opener,
        seen: SeenStore,
        sink: Callable[[Opened], None],
        *,
        check_bodies: bool = False,
    ) -> None:
        self._opener = opener
        self._seen = seen
        self._sink = sink
        self._check_bodies = check_bodies
        self.counts: Counter[str] = Counter()

    def handle(self, topic: str, payload: bytes, *, now: datetime) -> Verdict:
        """Raises only the gateway's own I/O errors (``ENVIRONMENT_ERRORS``): then nothing is acknowledged."""
        try:
            verdict = self._decide(topic, payload, now)
        except ENVIRONMENT_ERRORS:
            raise
        except Exception as err:  # a defect the message found: refused, not a stalled receiver
            verdict = Rejected(f"error:{type(err).__name__}")
        if isinstance(verdict, Accepted):
            try:
                self._sink(verdict.opened)
            except ENVIRONMENT_ERRORS:
                raise
            except Exception as err:
                verdict = Rejected(f"sink:{type(err).__name__}")
            else:
                opened = verdict.opened
                self._seen.remember(
                    opened.message_id, opened.device_id, now=now, seq=opened.seq, key=opened.key
                )
                self.counts["accepted"] += 1
                log.info(
                    "accepted %s %s #%d from %s", opened.kind, opened.message_id, opened.seq, _dev(topic)
                )
                return verdict
        if isinstance(verdict, Duplicate):
            self.counts["duplicate"] += 1
            log.info("duplicate %s from %s dropped", verdict.message_id, verdict.device_id)
            return verdict
        entry = self._seen.quarantine(topic, verdict.reason, bytes(payload), now=now)
        self.counts["rejected"] += 1
        self.counts[f"rejected:{verdict.reason}"] += 1
        log.warning("rejected a message on %s: %s (quarantined #%d)", _dev(topic), verdict.reason, entry)
        return verdict

    def _decide(self, topic: str, payload: bytes, now: datetime) -> Verdict:
        parsed = topics.parse(topic)
        if parsed is None:
            return Rejected("topic")
        device, leaf = parsed
        try:
            opened = self._opener.open(payload, now=now)
        except EnvelopeError as err:
            return Rejected(str(err.reason))
        if opened.device_id != device:
            return Rejected("device-topic")
        if opened.kind not in topics.KINDS[leaf]:
            return Rejected("kind-topic")
        problem = device_problem(opened.kind, opened.device_id, opened.body)
        if problem is None and self._check_bodies:
            problem = body_problem(opened.kind, opened.device_id, opened.body)
        if problem is not None:
            return Rejected(problem)
        sequence = self._seen.check_sequence(opened.device_id, opened.seq, opened.message_id, opened.key)
        if opened.message_id in self._seen:
            # Accepted long ago (stale), or under a key since retired: a redelivery, dropped as before.
            if sequence in ("duplicate", "sequence-stale", "key-retired"):
                return Duplicate(opened.message_id, opened.device_id)
            return Rejected("message-id-reused")  # a box never sends one id under two numbers
        if sequence == "duplicate":
            return Duplicate(opened.message_id, opened.device_id)
        if sequence != "new":
            return Rejected(sequence)
        return Accepted(opened)


def _dev(topic: str) -> str:
    parsed = topics.parse(topic)
    return parsed[0] if parsed else "an unexpected topic"
