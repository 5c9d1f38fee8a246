"""The composition root: the one place that knows the concrete parts of the box.

Parts start in order (storage, display, panel, link, workers) and stop in reverse in `finally`. One loop
owns every decision: adapters and workers post events into one queue, the controller turns each event into
effects, the loop applies them. systemd is told READY once everything is set up, and the watchdog is
pinged from this loop only, so a hung loop gets the box restarted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mynabox import __version__
from mynabox.adapters.audit import AuditLog
from mynabox.adapters.clock import clock_synced
from mynabox.adapters.keyfiles import load_audit_key, load_private_key, load_public_key
from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.oled import DisplayError, Oled
from mynabox.adapters.outbox import Outbox
from mynabox.adapters.panel import Panel, load_pin_map
from mynabox.adapters.pcsc import PcscReader
from mynabox.adapters.systemd import Notifier
from mynabox.app.cardread import READ_LIMIT_S
from mynabox.app.delivery import Delivery, Identity
from mynabox.app.readtiming import ReadTimings
from mynabox.app.workers import CardWorker, DeliveryWorker
from mynabox.card.certcheck import TrustStore
from mynabox.config import Config
from mynabox.core.effects import (
    Buzz,
    Effect,
    ForgetPatient,
    PublishState,
    RecordOutcome,
    SetLed,
    ShowScreen,
    StartDelivery,
    Stop,
)
from mynabox.core.events import (
    BrokerOffline,
    BrokerOnline,
    ClockSync,
    ConsentPressed,
    Event,
    LookupDone,
    QueueDepth,
    ShutdownRequested,
    Tick,
)
from mynabox.core.machine import Controller, MachineConfig
from mynabox.payload.seal import Sealer
from mynabox.render.draw import render
from mynabox.summary.port import SummaryLookup
from mynabox.vocab import ConsentMode

log = logging.getLogger(__name__)

TICK_S = 1.0  # the loop wakes at least this often (watchdog, housekeeping); sooner for a state's deadline
HOUSEKEEPING_S = 1.0
PURGE_EVERY_S = 3600.0
_CONSENT = {"none": None, "oral": ConsentMode.ORAL_CONSENT, "emergency": ConsentMode.LIFE_SAVING_EXCEPTION}
_EXTENDED = {"auto": None, "on": True, "off": False}


@dataclass
class Parts:
    """What the box is made of, for tests and the demo to look at (e.g. the dummy OLED, mock pins)."""

    oled: Oled | None = None
    panel: Panel | None = None
    outbox: Outbox | None = None
    link: MqttLink | None = None
    cards: CardWorker | None = None
    deliveries: DeliveryWorker | None = None
    controller: Controller | None = None


class Box:
    def __init__(
        self,
        config: Config,
        *,
        pin_factory: Any = None,
        notifier: Notifier | None = None,
        clock_synced_fn: Callable[[], bool] = clock_synced,
    ) -> None:
        self.config = config
        self.events: queue.Queue[Event] = queue.Queue()
        self.parts = Parts()
        self._pin_factory = pin_factory
        self._notifier = notifier or Notifier.from_environ()
        self._synced_fn = clock_synced_fn
        self._synced = clock_synced_fn()
        self._stoppers: list[tuple[str, Callable[[], None]]] = []
        self.ready = threading.Event()
        self.timings = ReadTimings()
        self._consent_at: float | None = None  # when the event being handled is a consent press
        self._hung_logged = False
        # Lookup (at most summary.limit_s) + seal + outbox + audit (ms) + SQLite's busy timeout, with room.
        self._delivery_hang_s = config.summary.limit_s + 30.0

    def post(self, event: Event) -> None:
        self.events.put(event)

    def request_stop(self) -> None:
        self.post(ShutdownRequested())

    # -- start --------------------------------------------------------------------------------------

    def _started(self, name: str, stop: Callable[[], None]) -> None:
        self._stoppers.append((name, stop))
        self._notifier.status(f"started {name}")

    def start(self) -> None:
        cfg = self.config
        state_dir = cfg.storage.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        audit_key = load_audit_key(cfg.audit.key.path)

        outbox = Outbox(state_dir / "outbox.db")
        self.parts.outbox = outbox
        self._started("outbox", outbox.close)
        audit = AuditLog(state_dir / "audit.jsonl", key=audit_key)

        display = cfg.display
        oled = Oled(
            display.driver,
            i2c_port=display.i2c_port,
            i2c_address=display.i2c_address,
            rotate=display.rotate,
            frames_dir=display.frames_dir,
        )
        self.parts.oled = oled
        self._started("display", oled.close)

        if cfg.panel.enabled:
            factory = self._pin_factory
            if factory is None and cfg.panel.pin_factory == "mock":
                from gpiozero.pins.mock import MockFactory

                factory = MockFactory()
            panel = Panel(load_pin_map(cfg.panel.pins_file), self.post, pin_factory=factory)
            self.parts.panel = panel
            self._started("panel", panel.close)

        link = MqttLink(
            cfg.mqtt.link_settings(cfg.device.id),
            outbox,
            on_link=lambda online: self.post(BrokerOnline() if online else BrokerOffline()),
            on_acked=self.timings.acked,
        )
        self.parts.link = link
        link.start()
        self._started("link", link.stop)

        summary = cfg.summary.client()
        summary.start()  # connects now: the first tap's lookup finds the connection warm
        delivery = build_delivery(
            cfg, outbox, audit, notify=link.notify, clock_synced=lambda: self._synced, lookup=summary
        )

        extra_roots: list[bytes] = []
        if cfg.device.test_mode:
            from mynabox.testing.testca import test_ca_pem

            extra_roots.append(test_ca_pem())
        cards = CardWorker(
            PcscReader(cfg.reader.name_filter),
            self.post,
            trust=TrustStore.jlis(extra_roots),
            hash_key=audit_key.reveal(),
            clock_synced=lambda: self._synced,
            extended=_EXTENDED[cfg.reader.extended_apdu],
            # Well inside the watchdog's hang limit, which stays the last resort.
            read_limit_s=min(READ_LIMIT_S, cfg.reader.hang_s / 2),
        )
        self.parts.cards = cards
        cards.start()
        self._started("reader", cards.stop)

        deliveries = DeliveryWorker(delivery, cards, self.post, self.timings)
        self.parts.deliveries = deliveries
        deliveries.start()
        self._started("delivery", deliveries.stop)
        # Stopped before the delivery worker (stoppers run in reverse): a lookup under way ends at once and
        # its card record is queued, where waiting it out (up to limit_s) would pass systemd's TimeoutStopSec.
        self._started("summary link", summary.close)

        self.parts.controller = Controller(
            MachineConfig(
                consent_window_s=cfg.consent.window_s,
                consent_timeout_s=cfg.consent.timeout_s,
                default_consent=_CONSENT[cfg.consent.default],
                result_clear_s=display.result_clear_s,
                error_clear_s=display.error_clear_s,
            )
        )

    # -- the loop -----------------------------------------------------------------------------------

    def run(self) -> int:
        controller = self.parts.controller
        assert controller is not None, "start() first"
        depth = self.parts.outbox.depth() if self.parts.outbox else 0
        self._apply_all(controller.start(clock_synced=self._synced, queued=depth))
        self._notifier.ready(f"ready: device {self.config.device.id}, version {__version__}")
        self.ready.set()
        interval = self._notifier.watchdog_interval()
        last_ping = last_house = time.monotonic()
        last_purge = 0.0
        queued = -1
        while True:
            wait = TICK_S
            if controller.deadline is not None:
                wait = min(wait, max(0.01, (controller.deadline - datetime.now(UTC)).total_seconds()))
            try:
                event: Event = self.events.get(timeout=wait)
            except queue.Empty:
                event = Tick()
            self._consent_at = time.monotonic() if isinstance(event, ConsentPressed) else None
            if isinstance(event, ShutdownRequested) and self.parts.outbox is not None:
                # the last retained state must count what is really left (housekeeping runs once a second)
                self._apply_all(controller.handle(QueueDepth(self.parts.outbox.depth()), datetime.now(UTC)))
            effects = controller.handle(event, datetime.now(UTC))
            if self._apply_all(effects):
                return 0
            if isinstance(event, LookupDone) and any(isinstance(e, ShowScreen) for e in effects):
                self.timings.result_shown()
            now = time.monotonic()
            hung = self._hung(now)
            if interval is not None and now - last_ping >= interval and not hung:
                self._notifier.watchdog()
                last_ping = now
            if now - last_house >= HOUSEKEEPING_S:
                last_house = now
                queued = self._housekeeping(queued, now - last_purge >= PURGE_EVERY_S)
                if now - last_purge >= PURGE_EVERY_S:
                    last_purge = now

    def _hung(self, now: float) -> bool:
        """A worker stuck in one read or one delivery: pings stop, so systemd's watchdog restarts the box
        (the loop itself is fine, but the crew would watch 読取中 or 照会中 forever)."""
        cards, deliveries = self.parts.cards, self.parts.deliveries
        stuck = [
            (what, busy)
            for what, busy, limit in (
                ("card read", cards.busy_s(now) if cards else 0.0, self.config.reader.hang_s),
                ("delivery", deliveries.busy_s(now) if deliveries else 0.0, self._delivery_hang_s),
            )
            if busy > limit
        ]
        if stuck and not self._hung_logged:
            what, busy = stuck[0]
            log.error("%s under way for %.0f s: no watchdog pings, systemd restarts the box", what, busy)
            self._notifier.status(f"hung: {what}")
        elif not stuck and self._hung_logged:
            log.warning("the hung worker recovered: watchdog pings resume")
        self._hung_logged = bool(stuck)
        return bool(stuck)

    def _housekeeping(self, queued: int, purge: bool) -> int:
        synced = self._synced_fn()
        if synced != self._synced:
            self._synced = synced
            self.post(ClockSync(synced))
        if purge and self.parts.deliveries is not None:
            retention_s = self.config.storage.outbox_retention_h * 3600.0
            self.parts.deliveries.submit_purge(retention_s)
        depth = self.parts.outbox.depth() if self.parts.outbox else 0
        if depth != queued:
            self.post(QueueDepth(depth))
        return depth

    def _apply_all(self, effects: list[Effect]) -> bool:
        """Apply effects in order; True when one of them was Stop."""
        for effect in effects:
            if isinstance(effect, Stop):
                return True
            try:
                self._apply(effect)
            except Exception:  # a failing display or buzzer must not stop the decisions
                log.exception("applying %s failed", type(effect).__name__)
        return False

    def _apply(self, effect: Effect) -> None:
        p = self.parts
        if isinstance(effect, ShowScreen):
            if p.oled is not None:
                try:
                    p.oled.show(render(effect.screen))
                except DisplayError as err:
                    log.warning("display: %s", err)
        elif isinstance(effect, Buzz):
            if p.panel is not None:
                p.panel.buzz(effect.tone)
        elif isinstance(effect, SetLed):
            if p.panel is not None:
                p.panel.set_led(effect.mode)
        elif isinstance(effect, StartDelivery | RecordOutcome):
            if p.deliveries is not None:
                p.deliveries.submit(effect, consent_at=self._consent_at)
        elif isinstance(effect, ForgetPatient):
            if p.cards is not None:
                p.cards.forget(effect.upto)
        elif isinstance(effect, PublishState) and p.link is not None:
            p.link.publish_state(
                {
                    "version": __version__,
                    "state": effect.state,
                    "reader_present": effect.reader_present,
                    "outbox_depth": effect.queued,
                    "clock_synced": effect.clock_synced,
                }
            )

    # -- stop ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._notifier.stopping("stopping")
        while self._stoppers:
            name, stop = self._stoppers.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", name)


def build_delivery(
    cfg: Config,
    outbox: Outbox,
    audit: AuditLog,
    *,
    notify: Callable[[], None],
    clock_synced: Callable[[], bool],
    lookup: SummaryLookup | None = None,
) -> Delivery:
    """Lookup client, sealer and identity from the config around the box's outbox and audit log."""
    sealer = Sealer(
        cfg.device.id,
        load_private_key(cfg.sealing.device_key.path),
        load_public_key(cfg.sealing.gateway_public_key),
        max_bytes=cfg.sealing.max_message_bytes,
    )
    return Delivery(
        Identity(cfg.device.id, cfg.device.unit_id, cfg.device.crew_id),
        lookup=lookup or cfg.summary.client(),
        sealer=sealer,
        outbox=outbox,
        audit=audit,
        notify=notify,
        clock=lambda: datetime.now(UTC),
        clock_synced=clock_synced,
    )


def run_box(config: Config, *, shutdown: threading.Event | None = None, **kwargs: Any) -> int:
    """Start, run until SIGTERM (or `shutdown` is set), stop in reverse order. Returns the exit code."""
    box = Box(config, **kwargs)
    watcher: threading.Thread | None = None
    try:
        box.start()
        if shutdown is not None:

            def watch() -> None:
                shutdown.wait()
                box.request_stop()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        return box.run()
    finally:
        box.stop()
