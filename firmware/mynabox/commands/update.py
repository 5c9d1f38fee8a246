"""`mynabox update`: the box's side of field updates.

- `bootloader-backend ACTION [SLOT [good|bad]]`: RAUC's `bootloader=custom` backend (system.conf's
  `[handlers] bootloader-custom-backend=`), on the two boot-state copies boot.scr reads (see
  mynabox.update.bootstate). RAUC runs `get-primary`, `set-primary SLOT`, `get-state SLOT`,
  `set-state SLOT good|bad` and, where it cannot tell from `rauc.slot=`, `get-current`; answers go to
  stdout, a failure exits 1 with its reason on stderr.
- `init-bootstate DIR`: both copies of a new card's state (slot A only), for the image build.
- `check-bundle FILE`: RAUC's signature check (`rauc info` with the box's system.conf) and ours: the whole
  payload against its signed hash tree, the box's compatible, no older version than the running firmware
  unless `--force-older`. `install` will run it first.
- `install FILE|URL`: check-bundle's checks, then RAUC (its service, over D-Bus, through `rauc install`)
  writes the other slot. The service runs at idle CPU and I/O priority (rauc.service);
  the daemon switches to the new slot only when the box is idle (mynabox.update.policy). An https URL is
  streamed by RAUC itself where the box's RAUC can (built with streaming, the kernel's nbd; `--stream
  auto`, mynabox.update.stream): RAUC checks the signature, we the board and version from `rauc info URL`,
  then `rauc install URL` reads only what it needs (with an adaptive bundle: the blocks neither slot
  holds), with the box's client certificate handed to RAUC's sandboxed helper (adapters.streaming). The
  payload is then checked block by block by dm-verity as RAUC reads it (not all before: that would read
  it all). Elsewhere the bundle is fetched whole over HTTPS into the state partition first, then checked
  like a file. Once written, the new slot's declared outbox format is read (debugfs, no mount): a firmware
  whose outbox this one could not read after a rollback is refused and its slot marked bad; otherwise this
  command makes it primary (RAUC does not: activate-installed=false, so a power cut before the check boots
  the old slot). The result and its time go to `update-result.json` in the state directory, which the
  daemon publishes on its `state` topic.
- `health`: after every boot of a slot (mynabox-health.service, as root, its settings from the unit's
  arguments, the self-test run as the daemon's user; `--config` only for the config's owner: the loader
  refuses, for root, a file another user can write): mynabox.app.healthcheck waits until the daemon is READY
  and its self-test passes (mynabox.update.health) within `--limit-s` (5 min), then `rauc status mark-good
  booted` (U-Boot's tries back); otherwise `mark-bad booted`, and a reboot now when the daemon never got
  READY, or, when it is READY (it may be reading cards), the daemon's own switch once idle (the other slot is
  now primary). A daemon plainly dead before READY — its unit failed for good (exit 78) or restarted
  `--max-restarts` times without ever being active (`--state-command`, systemctl show) — goes back at once.
  mynabox.update.policy.HealthCheck decides.
- `status`: the booted slot, what boot.scr found damaged, the slots' versions and state from
  `rauc status --output-format=json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports each command's modules only when it runs
    from mynabox.adapters.unitquery import UnitQuery
    from mynabox.adapters.updater import Reboot, SlotWatch
    from mynabox.update.lastresult import Result
    from mynabox.update.policy import UnitState

DEFAULT_BOOT_DIR = Path("/boot/firmware")
DEFAULT_STATE_DIR = Path("/var/lib/mynabox")
MAX_BUNDLE_BYTES = 1 << 30  # system.conf's max-bundle-download-size
BACKEND_ACTIONS = ("get-primary", "set-primary", "get-state", "set-state", "get-current")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="update_command", metavar="ACTION", required=True)
    backend = sub.add_parser("bootloader-backend", help="RAUC's custom bootloader backend")
    backend.add_argument("action", choices=BACKEND_ACTIONS)
    backend.add_argument("slot", nargs="?")
    backend.add_argument("value", nargs="?", choices=("good", "bad"))
    backend.add_argument("--dir", type=Path, default=DEFAULT_BOOT_DIR, help="where bootstate.0/1 are")
    backend.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"))
    init = sub.add_parser("init-bootstate", help="write a new card's boot state (both copies) into DIR")
    init.add_argument("dir", type=Path)
    check = sub.add_parser("check-bundle", help="would this bundle be installed? (signature, board, version)")
    check.add_argument("bundle", type=Path)
    check.add_argument("--conf", type=Path, default=Path("/etc/rauc/system.conf"))
    check.add_argument("--force-older", action="store_true", help="allow a downgrade (fleet ops only)")
    check.add_argument("--running", help="the running firmware's version (default: this firmware's)")
    install = sub.add_parser(
        "install", help="check a bundle (file or https URL) and install it into the other slot"
    )
    install.add_argument("source", help="a bundle file or an https:// URL of the fleet's update server")
    install.add_argument("--conf", type=Path, default=Path("/etc/rauc/system.conf"))
    install.add_argument("--force-older", action="store_true", help="allow a downgrade (fleet ops only)")
    install.add_argument("--running", help="the running firmware's version (default: this firmware's)")
    install.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the result goes")
    install.add_argument("--ca", type=Path, help="the update server's CA (https URL)")
    install.add_argument("--cert", type=Path, help="the box's client certificate (https URL)")
    install.add_argument("--key", type=Path, help="the box's client key (https URL)")
    install.add_argument("--max-bytes", type=int, default=MAX_BUNDLE_BYTES, help="refuse a larger download")
    install.add_argument("--timeout", type=float, default=3600.0, help="seconds for RAUC's install")
    install.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"), help="tells the booted slot")
    install.add_argument(
        "--stream",
        default="auto",
        choices=("auto", "always", "never"),
        help="https URL: auto (RAUC streams it where it can, else fetch), always (refuse rather than fetch), "
        "never (fetch the whole bundle first)",
    )
    # Where the streaming install puts the TLS copies for RAUC's helper, and the kernel's nbd (tests only).
    install.add_argument("--run-dir", type=Path, default=Path("/run"), help=argparse.SUPPRESS)
    install.add_argument("--nbd-module", type=Path, default=Path("/sys/module/nbd"), help=argparse.SUPPRESS)
    health = sub.add_parser("health", help="after a boot: mark the slot good, or go back to the other one")
    health.add_argument(
        "--config", type=Path, help="the state directory, boot state and reboot command from this config"
    )
    health.add_argument("--limit-s", type=float, default=300.0, help="seconds to become healthy")
    health.add_argument("--interval", type=float, default=5.0, help="seconds between looks")
    health.add_argument("--ready-command", default="systemctl is-active --quiet mynabox.service")
    health.add_argument(
        "--state-command",
        help="what systemd says of the daemon's unit (default: systemctl show -p … mynabox.service)",
    )
    health.add_argument(
        "--max-restarts",
        type=_at_least_one,
        default=3,
        help="restarts without ever being active after which the daemon counts as dead (rollback at once)",
    )
    health.add_argument("--selftest-command", help="default: this firmware's `mynabox selftest`")
    health.add_argument("--state-dir", type=Path, help="where update-result.json is (default: the config's)")
    health.add_argument("--boot-dir", type=Path, help="bootstate.0/1 (default: the config's)")
    health.add_argument("--cmdline", type=Path, help="the kernel command line (default: /proc/cmdline)")
    health.add_argument("--reboot-command", help="default: the config's (systemctl reboot)")
    status = sub.add_parser("status", help="booted slot, boot-state damage, the slots' versions")
    status.add_argument("--rauc-json", type=Path, help="read this instead of running rauc status")
    status.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"))
    status.add_argument("--dir", type=Path, default=DEFAULT_BOOT_DIR, help="where bootstate.0/1 are")


def _at_least_one(text: str) -> int:
    # 0 would call a daemon not yet started dead: every boot would roll back.
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    if args.update_command == "bootloader-backend":
        return _backend(args)
    if args.update_command == "init-bootstate":
        return _init(args.dir)
    if args.update_command == "check-bundle":
        return _check_bundle(args)
    if args.update_command == "install":
        return _install(args)
    if args.update_command == "health":
        return _health(args)
    return _status(args)


def _backend(args: argparse.Namespace) -> int:
    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs

    files = BootFiles(args.dir)
    action, slot = args.action, args.slot
    try:
        if action == "get-current":
            current = bs.booted_slot(_read_small(args.cmdline))
            if current is None:
                raise bs.BootStateError("no rauc.slot= on the kernel command line")
            print(current)
        elif action == "get-primary":
            primary = bs.get_primary(files.read().state)
            if primary is None:
                raise bs.BootStateError("no slot has tries left")
            print(primary)
        elif slot is None or (action == "set-state") != (args.value is not None):
            raise bs.BootStateError(
                f"{action}: expected {'SLOT good|bad' if action == 'set-state' else 'SLOT'}"
            )
        elif action == "get-state":
            bs.set_primary(files.read().state, slot)  # checks the slot's name
            print("good" if bs.get_state(files.read().state, slot) else "bad")
        elif action == "set-primary":
            files.change(lambda state: bs.set_primary(state, slot))
        else:
            files.change(lambda state: bs.set_state(state, slot, args.value == "good"))
    except (bs.BootStateError, OSError) as err:
        print(f"bootloader-backend {action}: {err}", file=sys.stderr)
        return 1
    return 0


def _init(directory: Path) -> int:
    from dataclasses import replace

    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs

    files = BootFiles(directory)
    # Copy 0 is the newer: the first boot reads it and writes its decrement into copy 1.
    files.write(1, replace(bs.INITIAL, seq=bs.INITIAL.seq - 1))
    files.write(0, bs.INITIAL)
    print(f"init-bootstate: {files.path(0)} and {files.path(1)}: order A, A 3 tries, B 0")
    return 0


def _status(args: argparse.Namespace) -> int:
    import subprocess

    from mynabox.adapters.bootfiles import BootFiles
    from mynabox.update import bootstate as bs
    from mynabox.update import raucstatus, text

    cmdline = _read_small(args.cmdline)
    print(f"booted slot: {bs.booted_slot(cmdline) or 'unknown (no rauc.slot=)'}")
    damage = bs.boot_damage(cmdline)
    print(f"boot state at boot: {damage.value if damage else 'unknown (not booted by boot.scr)'}")
    try:
        reading = BootFiles(args.dir).read()
        state = reading.state
        trial = f", {state.trial} on trial" if state.trial else ""
        print(
            f"boot state now: order {' '.join(state.order) or '-'}{trial}, tries A {state.a_left} "
            f"B {state.b_left}, seq {state.seq} (copy {reading.source}, {reading.damage.value})"
        )
    except OSError as err:
        print(f"boot state now: unreadable ({err.strerror})")
    try:
        if args.rauc_json is not None:
            raw = _read_small(args.rauc_json, raucstatus.MAX_BYTES + 1)
        else:
            done = subprocess.run(
                ["rauc", "status", "--detailed", "--output-format=json"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason"]
                print(f"rauc status failed: {text.printable(reason[0])}", file=sys.stderr)
                return 1
            raw = done.stdout.decode("utf-8", "replace")
        status = raucstatus.parse(raw)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"rauc status: {err}", file=sys.stderr)
        return 1
    except raucstatus.StatusError as err:
        print(f"rauc status: {err}", file=sys.stderr)
        return 1
    for line in raucstatus.describe(status):
        print(line)
    return 0


def _check_bundle(args: argparse.Namespace) -> int:
    import configparser
    import subprocess

    from mynabox.update import bundle

    try:
        info, verdict = _verdict(args.bundle, args.conf, args.running, args.force_older)
    except bundle.BundleRefused as err:
        print(f"check-bundle: refused: {err}", file=sys.stderr)
        return 1
    except (OSError, subprocess.TimeoutExpired, configparser.Error) as err:
        print(f"check-bundle: {err}", file=sys.stderr)
        return 1
    print(f"check-bundle: ok: {verdict} ({info.compatible}, build {info.build or '-'})")
    return 0


def _verdict(path: Path, conf_path: Path, running: str | None, force_older: bool) -> tuple[Any, str]:
    """RAUC's signature check, the payload against its hash tree, board and version: (info, verdict) or
    BundleRefused with the reason. Nothing is written."""

    import mynabox
    from mynabox.update import bundle

    compatible = _compatible(conf_path)
    info = _rauc_info(conf_path, [str(path)])
    _check_payload(path)
    verdict = bundle.check(
        info, compatible=compatible, running=running or mynabox.__version__, force_older=force_older
    )
    return info, verdict


def _last_line(stderr: bytes) -> str:
    lines = [
        line
        for line in stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("rauc-Message")
    ]
    return lines[-1] if lines else "no reason"


def _install(args: argparse.Namespace) -> int:
    from mynabox.adapters import updatefiles

    # Held until the result is kept: the daemon does not switch before (updatefiles says why).
    try:
        with updatefiles.installing(args.state_dir):
            return _install_held(args)
    except OSError as err:  # the lock's own: _install_held turns every other one into a kept result
        print(
            f"install: the install lock cannot be taken ({err.strerror}): nothing installed", file=sys.stderr
        )
        return 1


def _install_held(args: argparse.Namespace) -> int:
    import configparser
    import subprocess

    from mynabox.adapters import download, streaming
    from mynabox.update import bundle, lastresult
    from mynabox.update.text import printable

    source: str = args.source
    version = "-"
    fetched: Path | None = None
    try:
        if source.startswith("https://"):
            if args.ca is None or args.cert is None or args.key is None:
                raise bundle.BundleRefused(
                    "an https URL needs --ca, --cert and --key (the box's TLS identity)"
                )
            choice = _stream_choice(args.stream, args.nbd_module)
            if choice.stream:
                print(f"install: streaming from the update server ({choice.why})", flush=True)
                version = _install_streamed(args, source)
            else:
                print(f"install: fetching the whole bundle ({choice.why})", flush=True)
                path = fetched = args.state_dir / "incoming.raucb"
                size = download.fetch(
                    source, path, ca=args.ca, cert=args.cert, key=args.key, max_bytes=args.max_bytes
                )
                print(f"install: fetched {size} bytes from the update server")
                version = _install_file(args, path)
        elif "://" in source:
            raise bundle.BundleRefused("only a file or an https:// URL is accepted")
        else:
            version = _install_file(args, Path(source))
        _check_new_slot(args.conf, args.cmdline, version)
    except bundle.BundleRefused as err:
        return _result(args, lastresult.REFUSED, version, f"refused: {err}")
    except (download.DownloadError, streaming.StreamingError) as err:
        return _result(args, lastresult.REFUSED, version, f"refused: {err}")
    except _InstallFailed as err:
        return _result(args, lastresult.FAILED, err.version, str(err))
    except (OSError, subprocess.TimeoutExpired, configparser.Error) as err:
        return _result(args, lastresult.FAILED, version, printable(str(err), 200))
    finally:
        if fetched is not None:  # installed or refused, the state partition does not keep it
            fetched.unlink(missing_ok=True)
    _result(args, lastresult.INSTALLED, version, "installed; the box switches when idle or at power-on")
    return 0


def _stream_choice(mode: str, nbd_module: Path) -> Any:
    from mynabox.adapters import streaming
    from mynabox.update import stream

    can = stream.Capability(
        streaming=stream.rauc_streams(streaming.rauc_version()), nbd=streaming.nbd_present(nbd_module)
    )
    return stream.choose(mode, can)


def _install_file(args: argparse.Namespace, path: Path) -> str:
    """A bundle on the box: every check, then RAUC's install. Returns its version."""
    info, verdict = _verdict(path, args.conf, args.running, args.force_older)
    print(f"install: {verdict}: RAUC installs it into the other slot (at idle priority)")
    _rauc_install([str(path.resolve())], args.timeout, info.version)
    return str(info.version)


def _install_streamed(args: argparse.Namespace, url: str) -> str:
    """RAUC streams the bundle from the update server: the signature (RAUC's check) and the manifest first,
    board and version ours, then the install reads what it needs. Returns its version."""

    import mynabox
    from mynabox.adapters import streaming
    from mynabox.update import bundle, stream

    user = stream.sandbox_user(_read_small(args.conf))
    compatible = _compatible(args.conf)
    with streaming.sandbox_tls(user, ca=args.ca, cert=args.cert, key=args.key, run_dir=args.run_dir) as tls:
        info = _rauc_info(args.conf, [*tls.rauc_args(), url])
        verdict = bundle.check(
            info,
            compatible=compatible,
            running=args.running or mynabox.__version__,
            force_older=args.force_older,
        )
        print(f"install: {verdict}: RAUC streams it into the other slot (at idle priority)", flush=True)
        _rauc_install([*tls.rauc_args(), url], args.timeout, info.version)
    return str(info.version)


def _compatible(conf_path: Path) -> str:
    from mynabox.update import raucconf

    return raucconf.compatible(raucconf.parse(_read_small(conf_path)))


def _rauc_info(conf_path: Path, source: list[str]) -> Any:
    """`rauc info` of a bundle (a file, or a URL with the streaming TLS options): RAUC checks the signature;
    its manifest read strictly (BundleInfo), or BundleRefused with RAUC's reason."""
    import subprocess

    from mynabox.update import bundle
    from mynabox.update.text import printable

    done = subprocess.run(
        ["rauc", "-c", str(conf_path), "info", "--output-format=json", *source],
        capture_output=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise bundle.BundleRefused(f"RAUC refused it: {printable(_last_line(done.stderr))}")
    return bundle.parse_info(done.stdout.decode("utf-8", "replace"))


def _rauc_install(what: list[str], timeout: float, version: str) -> None:
    import subprocess

    from mynabox.update.text import printable

    done = subprocess.run(["rauc", "install", *what], capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        # The client prints the service's reason as "LastError: …" on stdout.
        errors = [
            line.removeprefix("LastError:").strip()
            for line in done.stdout.decode("utf-8", "replace").splitlines()
            if line.startswith("LastError:")
        ]
        reason = errors[-1] if errors else _last_line(done.stderr)
        raise _InstallFailed(f"RAUC's install failed: {printable(reason, 200)}", version)


class _InstallFailed(Exception):
    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


def _check_new_slot(conf_path: Path, cmdline: Path, version: str) -> None:
    """Before any switch: the new slot's firmware must write an outbox this one can read after a rollback
    (mynabox.update.formats). Then the slot is made primary (RAUC leaves it non-bootable); refused, it is
    marked bad (never booted) and BundleRefused says why."""
    import subprocess

    from mynabox.adapters import outbox, slotfiles
    from mynabox.update import bootstate as bs
    from mynabox.update import bundle, formats, raucconf

    try:
        conf = raucconf.parse(_read_small(conf_path))
        device = Path(raucconf.other_slot_device(conf, bs.booted_slot(_read_small(cmdline))))
        where = f"{slotfiles.site_packages(device)}/{formats.PATH}"
        new = formats.parse(slotfiles.read_text(device, where, formats.MAX_BYTES))
        why = formats.refusal(new, running_schema=outbox.SCHEMA_VERSION)
    except (slotfiles.SlotFileError, formats.FormatsError, bundle.BundleRefused, OSError) as err:
        # RAUC has made the slot primary: unless it is shown fit, it must not be booted.
        why = f"the new slot's storage formats cannot be read: {err}"
    if why is None:
        # RAUC left the slot non-bootable (system.conf: activate-installed=false): the switch starts here.
        print("install: the new slot's outbox format is readable by this version: making it primary")
        marked = subprocess.run(
            ["rauc", "status", "mark-active", "other"], capture_output=True, timeout=120, check=False
        )
        if marked.returncode != 0:
            raise _InstallFailed(
                f"the new slot could not be made primary ({_last_line(marked.stderr)})", version
            )
        return
    marked = subprocess.run(
        ["rauc", "status", "mark-bad", "other"], capture_output=True, timeout=120, check=False
    )
    if marked.returncode != 0:  # the idle switch waits for this command's lock: say it loudly
        raise _InstallFailed(f"{why}; marking the slot bad FAILED ({_last_line(marked.stderr)})", version)
    raise bundle.BundleRefused(f"{why} (the written slot is marked bad: it is not booted)")


def _result(args: argparse.Namespace, result: str, version: str, detail: str) -> int:
    from datetime import UTC, datetime

    from mynabox.adapters import updatefiles
    from mynabox.update import lastresult

    stream = sys.stdout if result == lastresult.INSTALLED else sys.stderr
    print(f"install: {detail}", file=stream)
    try:
        updatefiles.write(args.state_dir, lastresult.Result(result, version, datetime.now(UTC), detail))
    except OSError as err:
        print(f"install: the result could not be kept ({err.strerror})", file=sys.stderr)
    return 0 if result == lastresult.INSTALLED else 1


def _check_payload(path: Path) -> None:
    """The whole payload against the signed hash tree (rauc info checked the signature just before)."""
    from mynabox.update import bundle, verity

    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - 8))
            offset, length = verity.signature_span(size, f.read(8))
            f.seek(offset)
            lay = verity.layout(verity.signed_manifest(f.read(length)), size, offset)

            def read(at: int, count: int) -> bytes:
                f.seek(at)
                return f.read(count)

            verity.verify(read, lay)
    except verity.VerityError as err:
        raise bundle.BundleRefused(str(err)) from None


def _health(args: argparse.Namespace) -> int:
    """The settings from the unit's arguments (or a config its owner runs it with), the outside wired to
    mynabox.app.healthcheck, which watches and decides."""
    import shlex
    from dataclasses import replace

    import mynabox
    from mynabox.adapters.unitquery import UnitQuery
    from mynabox.adapters.updater import Reboot, SlotWatch
    from mynabox.app import healthcheck
    from mynabox.config import ConfigError, load_config
    from mynabox.config.model import StorageConfig, UpdateConfig

    update, state_dir = UpdateConfig(), StorageConfig().state_dir
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as err:
            print(f"health: {err}", file=sys.stderr)
            return 2
        update, state_dir = config.update, config.storage.state_dir
    update = replace(
        update,
        boot_dir=args.boot_dir or update.boot_dir,
        cmdline=args.cmdline or Path("/proc/cmdline"),  # root, unsandboxed: the kernel's own
        reboot_command=args.reboot_command or update.reboot_command,
    )
    slots = SlotWatch(update.boot_dir, update.cmdline)
    booted = slots.booted()
    if booted is None:
        print("health: not booted by boot.scr (no rauc.slot=): nothing to mark")
        return 0
    config_args = ["--config", str(args.config)] if args.config else []
    selftest = (
        shlex.split(args.selftest_command)
        if args.selftest_command
        else [sys.executable, "-m", "mynabox.cli", "selftest", *config_args]
    )
    box = _HealthBox(
        ready_command=shlex.split(args.ready_command),
        selftest_command=selftest,
        unit=UnitQuery(shlex.split(args.state_command)) if args.state_command else UnitQuery(),
        slots=slots,
        state_dir=args.state_dir or state_dir,
        reboot=Reboot(update.reboot_command.split(), slots.destination),
        version=mynabox.__version__,
    )
    settings = healthcheck.Settings(
        booted=booted,
        version=mynabox.__version__,
        limit_s=args.limit_s,
        interval_s=args.interval,
        max_restarts=args.max_restarts,
    )
    return healthcheck.run(box, settings)


class _HealthBox:
    """mynabox.app.healthcheck's HealthBox on a box: subprocesses (bounded), RAUC's client, the boot state,
    the result file in the state directory."""

    def __init__(
        self,
        *,
        ready_command: list[str],
        selftest_command: list[str],
        unit: UnitQuery,
        slots: SlotWatch,
        state_dir: Path,
        reboot: Reboot,
        version: str,
    ) -> None:
        self._ready_command = ready_command
        self._selftest_command = selftest_command
        self._unit = unit
        self._slots = slots
        self._state_dir = state_dir
        self._reboot = reboot
        self._version = version

    @staticmethod
    def _run(command: list[str]) -> tuple[int, str]:
        import subprocess

        try:
            done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return 127, str(err)
        return done.returncode, done.stdout.decode("utf-8", "replace")

    def ready(self) -> bool:
        return self._run(self._ready_command)[0] == 0

    def unit(self) -> UnitState:
        return self._unit()

    def selftest(self) -> tuple[int, str]:
        return self._run(self._selftest_command)

    def other_bootable(self) -> bool:
        return self._slots.other_bootable()

    def mark(self, good: bool) -> bool:
        return self._run(["rauc", "status", "mark-good" if good else "mark-bad", "booted"])[0] == 0

    def last_result(self) -> Result | None:
        from mynabox.adapters import updatefiles

        return updatefiles.read(self._state_dir)

    def keep(self, result: str, detail: str) -> None:
        from datetime import UTC, datetime

        from mynabox.adapters import updatefiles
        from mynabox.update import lastresult

        try:
            kept = lastresult.Result(result, self._version, datetime.now(UTC), detail)
            updatefiles.write(self._state_dir, kept)
        except OSError as err:
            print(f"health: the result could not be kept ({err.strerror})", file=sys.stderr)

    def reboot(self, reason: str) -> None:
        self._reboot(reason)

    @staticmethod
    def monotonic() -> float:
        import time

        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        import time

        time.sleep(seconds)

    @staticmethod
    def say(line: str, *, problem: bool = False) -> None:
        print(line, file=sys.stderr if problem else sys.stdout, flush=True)


def _read_small(path: Path, limit: int = 64 * 1024) -> str:
    with path.open("rb") as f:
        return f.read(limit).decode("utf-8", "replace")
