"""The composition root: the one place that knows the concrete parts of the box.

`build` makes the parts from the config and starts them in order (storage, display, panel, link, workers),
registering each one's stop as it goes; `run_box` runs the decision loop (`mynabox.app.loop`) over them until
its shutdown Event is set, then stops what started, in reverse. `mynabox run`, the demo and the in-process
harness of the tests all run the box through `run_box`; signal handlers only set the Event.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, assert_never

from mynabox import __version__
from mynabox.adapters import heap, updatefiles
from mynabox.adapters.audit import AuditLog
from mynabox.adapters.clock import clock_synced
from mynabox.adapters.gpiochip import chip_factory
from mynabox.adapters.keyfiles import load_audit_key, load_private_key, load_public_key
from mynabox.adapters.mqtt import MqttLink
from mynabox.adapters.oled import Display, Oled
from mynabox.adapters.outbox import Outbox
from mynabox.adapters.panel import NullPanel, Panel, PanelPort, load_pin_map
from mynabox.adapters.pcsc import PcscReader
from mynabox.adapters.summary_client import HttpsSummaryClient
from mynabox.adapters.systemd import Notifier
from mynabox.adapters.updater import Reboot, SlotWatch
from mynabox.app.cardread import READ_LIMIT_S
from mynabox.app.delivery import Delivery, Identity
from mynabox.app.holding import Holding
from mynabox.app.loop import ClockWatch, Loop, Watched
from mynabox.app.readtiming import ReadTimings
from mynabox.app.workers import CardWorker, DeliveryWorker
from mynabox.card.certcheck import TrustStore
from mynabox.config import Config
from mynabox.config.model import PinFactory, SummaryConfig
from mynabox.core.effects import (
    Buzz,
    Effect,
    ForgetPatient,
    PublishState,
    RebootForUpdate,
    RecordOutcome,
    SetLed,
    ShowScreen,
    StartDelivery,
    Stop,
)
from mynabox.core.events import BrokerOffline, BrokerOnline, Event, ShutdownRequested
from mynabox.core.machine import Controller, MachineConfig
from mynabox.payload.seal import Sealer
from mynabox.record import record
from mynabox.render.draw import render
from mynabox.summary.port import SummaryLookup

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")  # what the state topic carries (adapters.mqtt.check_state)


Started = Callable[[str, Callable[[], None]], None]
"""Told each part's name and its stop once the part is up, so what started is stopped in reverse."""


@record
class Parts:
    """What the box is made of, built and started; tests and the demo look at it (dummy OLED, mock pins)."""

    events: queue.Queue[Event]
    clock: ClockWatch
    timings: ReadTimings
    outbox: Outbox
    oled: Display
    panel: PanelPort
    link: MqttLink
    holding: Holding  # the reads' records: the card worker keeps, the delivery worker takes, the loop forgets
    cards: CardWorker
    deliveries: DeliveryWorker
    controller: Controller
    slots: SlotWatch
    reboot: Reboot
    state_dir: Path


def build(
    config: Config,
    started: Started,
    *,
    pin_factory: Any = None,
    clock_synced_fn: Callable[[], bool] = clock_synced,
) -> Parts:
    """Make and start every part, each one's stop given to `started` right after its start: a part that
    fails raises, and every part that runs is already in `started`."""
    cfg = config
    events: queue.Queue[Event] = queue.Queue()
    clock = ClockWatch(clock_synced_fn)
    timings = ReadTimings()
    state_dir = cfg.storage.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    audit_key = load_audit_key(cfg.audit.key.path)

    outbox = Outbox(state_dir / "outbox.db")
    started("outbox", outbox.close)
    audit = AuditLog(state_dir / "audit.jsonl", key=audit_key)

    display = cfg.display
    # Display and panel are kept parts: one that cannot start leaves a box that still reads and delivers.
    oled = Display(
        lambda: Oled(
            display.driver,
            i2c_port=display.i2c_port,
            i2c_address=display.i2c_address,
            rotate=display.rotate,
            frames_dir=display.frames_dir,
        ),
        events.put,
    )
    started("display", oled.close)

    panel: PanelPort = NullPanel()
    if cfg.panel.enabled:
        pins = load_pin_map(cfg.panel.pins_file)  # an unusable pin map is a config error: it raises
        if cfg.panel.pin_factory is PinFactory.MOCK:
            from gpiozero.pins.mock import MockFactory

            panel = Panel(pins, events.put, pin_factory=pin_factory or MockFactory())
        else:
            panel = Panel(pins, events.put, pin_factory=pin_factory, make_factory=chip_factory)
        started("panel", panel.close)

    link = MqttLink(
        cfg.mqtt,
        cfg.device.id,
        outbox,
        on_link=lambda online: events.put(BrokerOnline() if online else BrokerOffline()),
        on_acked=timings.acked,
    )
    link.start()
    started("link", link.stop)

    summary = summary_client(cfg.summary)  # started last, below: nothing runs until then
    delivery = build_delivery(cfg, outbox, audit, notify=link.notify, clock_synced=clock, lookup=summary)

    holding = Holding()
    cards = CardWorker(
        PcscReader(cfg.reader.name_filter),
        events.put,
        holding,
        trust=TrustStore.jlis(test_root=cfg.device.test_mode),
        hash_key=audit_key.reveal(),
        clock_synced=clock,
        extended=cfg.reader.extended_apdu.forced,
        # Well inside the watchdog's hang limit, which stays the last resort.
        read_limit_s=min(READ_LIMIT_S, cfg.reader.hang_s / 2),
    )
    cards.start()
    started("reader", cards.stop)

    deliveries = DeliveryWorker(delivery, holding, events.put, timings)
    deliveries.start()
    started("delivery", deliveries.stop)
    # Started last, so stopped first (stops run in reverse): a lookup under way ends at once and its card
    # record is queued, where waiting it out (up to limit_s) would pass systemd's TimeoutStopSec. Its stop is
    # registered right after its start, so no failure in between (a bad key file) leaves the keeper thread
    # and its TLS connection running. No lookup can come before: the loop starts after `build`.
    summary.start()  # connects now: the first tap's lookup finds the connection warm
    started("summary link", summary.close)

    controller = Controller(
        MachineConfig(
            consent_window_s=cfg.consent.window_s,
            consent_timeout_s=cfg.consent.timeout_s,
            default_consent=cfg.consent.default.mode,
            result_clear_s=display.result_clear_s,
            error_clear_s=display.error_clear_s,
            update_idle_s=cfg.update.idle_min * 60.0,
        )
    )
    slots = SlotWatch(cfg.update.boot_dir, cfg.update.cmdline, state_dir)
    slots.report_boot_state()
    reboot = Reboot(cfg.update.reboot_command.split(), slots.destination)
    return Parts(
        events,
        clock,
        timings,
        outbox,
        oled,
        panel,
        link,
        holding,
        cards,
        deliveries,
        controller,
        slots,
        reboot,
        state_dir,
    )


def apply(parts: Parts, effect: Effect, consent_at: float | None) -> None:
    """One effect on the part it is for (`consent_at`: when 同意/緊急 was pressed, for the read timing)."""
    match effect:
        case ShowScreen(screen):
            parts.oled.show(render(screen))
        case Buzz(tone):
            parts.panel.buzz(tone)
        case SetLed(mode):
            parts.panel.set_led(mode)
        case StartDelivery() | RecordOutcome():
            parts.deliveries.submit(effect, consent_at=consent_at)
        case ForgetPatient(upto):
            parts.holding.forget(upto)
        case RebootForUpdate(reason):
            parts.reboot(reason)
        case PublishState():
            parts.link.publish_state(
                {
                    "version": __version__,
                    "state": effect.state,
                    "reader_present": effect.reader_present,
                    "outbox_depth": effect.queued,
                    "clock_synced": effect.clock_synced,
                    "failed_parts": "+".join(p.value for p in effect.failed),
                    **update_state(parts),
                }
            )
        case Stop():  # the loop ends on it before applying it
            pass
        case _:
            assert_never(effect)


def update_state(parts: Parts) -> dict[str, str | None]:
    """The state topic's update keys: the booted slot and the last update's result (read each time: an
    install runs beside the daemon). A value that is not a plain token is left out as null."""
    kept = updatefiles.read(parts.state_dir)
    last = kept.published() if kept else {}
    published: dict[str, str | None] = {"slot": parts.slots.booted(), "boot_state": parts.slots.boot_state()}
    for key in ("result", "version", "at"):
        value = last.get(key)
        published[f"update_{key}"] = value if value is not None and _TOKEN.fullmatch(value) else None
    return published


def loop(config: Config, parts: Parts, notifier: Notifier) -> Loop:
    """The decision loop over the parts, watching both workers for a job that never ends."""
    retention_s = config.storage.outbox_retention_h * 3600.0
    return Loop(
        parts.controller,
        parts.events,
        apply=lambda effect, consent_at: apply(parts, effect, consent_at),
        notifier=notifier,
        clock=parts.clock,
        depth=parts.outbox.depth,
        purge=lambda: parts.deliveries.submit_purge(retention_s),
        watched=(
            Watched("card read", parts.cards.busy_s, config.reader.hang_s),
            # Lookup (at most summary.limit_s) + seal + outbox + audit (ms) + SQLite's busy timeout, + room.
            Watched("delivery", parts.deliveries.busy_s, config.summary.limit_s + 30.0),
        ),
        result_shown=parts.timings.result_shown,
        retry=lambda: _retry(parts),
        failed=lambda: (*parts.oled.failed(), *parts.panel.failed()),
        update_pending=parts.slots.pending,
        idle=heap.release_free_heap,
    )


def _retry(parts: Parts) -> None:
    parts.oled.retry()
    parts.panel.retry()


def _stop_when_set(shutdown: threading.Event, events: queue.Queue[Event]) -> None:
    shutdown.wait()
    events.put(ShutdownRequested())


def run_box(
    config: Config,
    shutdown: threading.Event,
    *,
    pin_factory: Any = None,
    notifier: Notifier | None = None,
    clock_synced_fn: Callable[[], bool] = clock_synced,
    on_ready: Callable[[Parts], None] = lambda parts: None,
) -> int:
    """Build and start the box, run its loop until `shutdown` is set, stop what started in reverse.

    Returns the exit code. A part that cannot start raises (after the ones before it were stopped): the
    caller turns that into its exit code. `on_ready` sees the parts once systemd has been told READY.
    """
    notifier = notifier or Notifier.from_environ()
    stops: list[tuple[str, Callable[[], None]]] = []

    def started(name: str, stop: Callable[[], None]) -> None:
        stops.append((name, stop))
        notifier.status(f"started {name}")

    try:
        parts = build(config, started, pin_factory=pin_factory, clock_synced_fn=clock_synced_fn)
        # A thread turns the Event into the loop's event: a signal handler may only set it, and the loop
        # then stops as soon as it is set instead of at its next wake-up. It ends when shutdown is set.
        threading.Thread(
            target=_stop_when_set, args=(shutdown, parts.events), name="shutdown", daemon=True
        ).start()
        return loop(config, parts, notifier).run(
            f"ready: device {config.device.id}, version {__version__}", lambda: on_ready(parts)
        )
    finally:
        notifier.stopping("stopping")
        while stops:
            name, stop = stops.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", name)


def summary_client(cfg: SummaryConfig) -> HttpsSummaryClient:
    """The lookup client the [summary] section describes (its TLS context built now, its key read now)."""
    return HttpsSummaryClient(
        cfg.url,
        ca_file=cfg.ca_file,
        client_cert=cfg.client_cert,
        client_key=cfg.client_key.path,
        timeout_s=cfg.timeout_s,
        retries=cfg.retries,
        limit_s=cfg.limit_s,
        keepalive_s=cfg.keepalive_s or None,
    )


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
        lookup=lookup or summary_client(cfg.summary),
        sealer=sealer,
        outbox=outbox,
        audit=audit,
        notify=notify,
        clock=lambda: datetime.now(UTC),
        clock_synced=clock_synced,
    )
