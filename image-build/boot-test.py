"""`make image-test`: boots the built image under qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG: no KVM for
arm64 on this host) through Debian's U-Boot and the image's own boot.scr (image-build/vmbox.py: the card, the
host's broker, reference summary service and receiver, the VM), then runs its checks in order, each with
the seconds since power-on printed:
  - U-Boot's boot.scr read the boot state (both copies sound), chose slot A and sourced slot A's own second
    stage (/boot/mynabox-boot.scr), which loaded slot A's kernel and initramfs;
  - the initramfs grows the state partition to the end of the bigger "card" and systemd grows its ext4;
  - the first boot takes the identity in (mynabox-firstboot.service succeeds);
  - the daemon reaches READY (systemd logs "Started mynabox.service" only after READY=1 for Type=notify),
    with the root mounted read-only (and writes to it refused);
  - the box connects to the broker on the host with its client certificate;
  - the simulated GPIO chip and I2C bus have the image's udev groups; the daemon holds the pin map's lines;
  - the image's own `gpioinfo` (libgpiod) shows those lines held: buttons in, LED and buzzer out,
    consumer "lg";
  - the display is luma's real ssd1306 driver on the emulated I2C bus, which has no display (--oled ssd1306,
    the default): the daemon logs the display failed and goes on (READY, the taps below delivered), its
    retained state names it in `failed_parts`, and `mynabox selftest` fails the display check only;
  - a virtual card in qemu's emulated USB reader (usb-ccid, a CCID reader libccid knows, with its
    ccid-card-passthru slot fed by the test over VSCard: tests/support/vscard.py) is read by the image's own
    pcscd + libccid (no vpcd anywhere), the lookup goes to the reference service, and the sealed summary
    that reaches the broker is opened by `mynabox receive`; the card is removed and another inserted from
    the test, and that second tap arrives too (the daemon's read-timing lines are printed); the 同意 and
    緊急 presses on the simulated buttons reach the audit records; the LED and buzzer lines are driven;
  - the daemon stopped with SIGSTOP is killed and restarted by systemd's watchdog, and it logged no error;
  - the update parts: RAUC's service answers with slot A booted, mynabox-health checks it (it cannot mark
    it good here: the display fails on purpose; the update test proves the marking), the
    verity bundle's modules (loop, dm-verity, squashfs, nbd) are loaded;
  - the boot's softdog: armed when the initramfs loaded it (soft_active_on_boot, the slot's margin; first
    of init-top, before udev loads the i6300esb's driver; the kernel's time to it is printed), PID 1
    opened the hardware watchdog through /dev/watchdog-hw (not softdog), and mynabox-softdog-handover
    disarmed softdog after that (the kernel's time from softdog's load to the disarm is printed);
  - PID 1 drives the hardware watchdog (qemu's i6300esb): a crashed kernel is reset by it, U-Boot boots
    slot A again and the box comes back to READY (a second boot: nothing to grow, no identity left);
  - afterwards no fragment of a provisioned secret can be read from the FAT partition's bytes.
The tap needs the test copy's config in test mode (the virtual card's certificate is from the test CA):
`provision` refuses `device.test_mode`, so the test sets it in the guest after the first boot and restarts.
Run as root (debugfs on the test copy) with the project's venv:
  .venv/bin/python image-build/boot-test.py [--out DIR] [--timeout S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from vmbox import (
    DEVICE_ID,
    DISPLAY,
    FAILED,
    FIRSTBOOT_OK,
    HERE,
    READY,
    SIM,
    Box,
    Console,
    Options,
    diagnose,
    exit_code,
    launch,
    leaked,
    plain,
)

from support.vscard import VscardCard

# Matched on the journal's lines (forwarded to the console, no colour codes).
GROWN = "mynabox: grow-state: "
PROBE = "/usr/.mynabox-probe"  # check_layout's write to the read-only root, which must fail
DAEMON_ERROR = re.compile(r"\b(ERROR|CRITICAL|Traceback)\b")
# qemu 7.2's usb-ccid discards any reader-to-host message over 384 bytes ("ccid_reserve_recv_buf: len larger
# then max (896>384)"), so the certificate's rest in one extended READ BINARY never reaches the guest; short
# reads of 256 bytes fit. A limit of the emulated reader: real CCID readers announce extended APDUs.
READER = '\\n[reader]\\nextended_apdu = "off"\\n'  # printf's escapes, in the guest (provision refuses it)
TIMING = re.compile(r"mynabox\[\d+\]: .*read (?:delivered|result-shown) .*")
BOOT_STATE_LINE = re.compile(r"mynabox: boot state copy (\S+) \((\S+)\)")
# The second stage boot.scr sourced from the slot itself (its /boot/mynabox-boot.scr) names the slot.
STAGE_LINE = re.compile(
    r"mynabox: slot ([AB]): boot stage of the slot \(/boot/mynabox-boot\.scr\), stub (\S+)"
)

# The boot's softdog (the slot's boot stage arms it, the initramfs loads it, mynabox-softdog-handover
# disarms it): the kernel's lines, PID 1's, the handover's (written to /dev/kmsg: the kernel's time stamps).
# Not anchored at the line's start: the initramfs's "Begin: Loading essential drivers ... " precedes
# softdog's first line on the same console line.
STAMP = r"\[\s*(\d+\.\d+)\] "
SOFTDOG_LOADED = re.compile(STAMP + r"softdog: initialized\. .*soft_margin=(\d+) sec", re.M)
SOFTDOG_ARMED = re.compile(STAMP + r"softdog: .*soft_active_on_boot=(\d)", re.M)
HW_PROBED = re.compile(STAMP + r"i6300ESB timer \S+: initialized", re.M)  # its driver stops a running timer
PID1_HOLDS = re.compile(STAMP + r"systemd\[1\]: Using hardware watchdog '([^']*)', .*device (\S+)", re.M)
DISARMED = re.compile(STAMP + r"mynabox: softdog: (disarmed .*)$", re.M)

Check = Callable[[Box], bool]
CREDENTIALS = ("device-key", "mqtt-client-key", "summary-client-key", "audit-key")  # mynabox.service's


def wait_for_summary(
    received: Path, receive: subprocess.Popen[bytes], timeout: float, holding: str
) -> dict[str, Any] | None:
    """The first opened message of kind summary the receiver wrote whose body holds `holding` (the tap's
    audit record comes too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and receive.poll() is None:
        for path in sorted(received.rglob("*.json")):
            doc: dict[str, Any] = json.loads(path.read_text())
            if doc.get("kind") == "summary" and holding in json.dumps(doc.get("body"), ensure_ascii=False):
                return doc
        time.sleep(0.5)
    return None


def pin_map() -> dict[str, int]:
    """The packaged pin map's BCM numbers (the daemon's default), by function."""
    import tomllib

    doc = tomllib.loads((HERE.parent / "firmware/mynabox/data/pins.toml").read_text(encoding="utf-8"))

    # The map names lines as the kernel does ("GPIO17"): gpio-sim's offset.
    def offset(line: int | str) -> int:
        return line if isinstance(line, int) else int(line.removeprefix("GPIO"))

    return {
        "consent": offset(doc["buttons"]["consent"]),
        "emergency": offset(doc["buttons"]["emergency"]),
        "led": offset(doc["led"]["status"]),
        "buzzer": offset(doc["buzzer"]["pin"]),
    }


def gpio_lines(console: Console, pins: dict[str, int]) -> dict[str, str]:
    """Each pin's line as the kernel reports it (gpio-sim's debugfs: consumer, direction and level, bias)."""
    out = plain(console.sh("cat /sys/kernel/debug/gpio"))
    base = re.search(r"GPIOs (\d+)-\d+, parent: platform/gpio-sim", out)
    lines = {}
    for name, pin in pins.items():
        found = base and re.search(rf"^\s*gpio-{int(base.group(1)) + pin}\s+\(([^)]*)\)\s+(\S+)", out, re.M)
        lines[name] = f"{found.group(2)} ({found.group(1).strip()})" if found else "?"
    return lines


def press(console: Console, pin: int, hold_s: float = 0.4) -> None:
    """A button to GND: the simulated line pulled down for `hold_s`, then up again."""
    console.sh(
        f"echo pull-down > {SIM}/sim_gpio{pin}/pull; sleep {hold_s}; echo pull-up > {SIM}/sim_gpio{pin}/pull"
    )


def consents_received(received: Path) -> list[str]:
    """The consent of every audit record the receiver opened."""
    found = []
    for path in sorted(received.rglob("*.json")):
        found += re.findall(r'"consent":\s*"([a-z-]+)"', path.read_text(errors="replace"))
    return found


def check_ready(box: Box) -> bool:
    """U-Boot's boot.scr chose slot A from sound boot state and sourced slot A's own second stage, which
    loaded its kernel; the first boot reaches READY."""
    console = box.console
    ready = console.wait(READY, box.options.timeout, fail=FAILED)
    state = BOOT_STATE_LINE.findall(console.text())
    stages = STAGE_LINE.findall(console.text())
    print(
        "boot-test: U-Boot: boot state", state[:1], "slots loaded", console.slots(), "second stages", stages
    )
    ok = box.check(
        "uboot_slot_a_s",
        console.slots()[:1] == ["A"] and bool(state) and state[0][1] == "ok" and stages[:1] == [("A", "1")],
    )
    if console.wait(FIRSTBOOT_OK, 0.1) is not None:
        print("boot-test: the first boot took the identity in")
    if not box.check("boot_to_ready_s", ready is not None):
        diagnose(console)
        print("boot-test: last console lines:")
        print("\n".join(console.text().splitlines()[-60:]))
        return False
    return ok


def check_layout(box: Box) -> bool:
    """The initramfs grew partition 4 to the card's end, the ext4 on it followed, the root is read-only."""
    console = box.console
    grown = console.wait(GROWN, 0.1)
    line = console.text(grown or 0).splitlines()[0] if grown else "(no line)"
    print(f"boot-test: initramfs: {GROWN}{line.strip()}")
    out = console.sh(
        "echo part=$(( $(cat /sys/class/block/vda4/size) * 512 )); "
        "echo fs=$(( $(stat -f -c '%b * %S' /var/lib/mynabox) )); "
        "echo root=$(findmnt -n -o OPTIONS /); "
        f"touch {PROBE} 2>&1 | tail -n 1"
    )
    values = dict(re.findall(r"^(part|fs|root)=(\S+)$", plain(out), re.MULTILINE))
    part, fs = int(values.get("part", "0")), int(values.get("fs", "0"))
    card = box.image.stat().st_size
    print(f"boot-test: state partition {box.state_before >> 20} -> {part >> 20} MiB (card {card >> 20} MiB), "
          f"its ext4 {fs >> 20} MiB; root mounted {values.get('root', '?')}")  # fmt: skip
    ok = box.check("state_grown_s", part >= box.state_before + (500 << 20) and fs >= part * 9 // 10)
    root_ro = values.get("root", "").split(",")[0] == "ro" and "Read-only file system" in (out or "")
    return box.check("root_read_only_s", root_ro) and ok


def check_test_mode(box: Box) -> bool:
    """Test mode (the test CA) for the virtual card and short reads (READER), in the state partition's
    config; then a restart. No consent default: the test presses the buttons."""
    since = box.console.mark()
    config = "/var/lib/mynabox/identity/config.toml"
    # ssd1306: the emulated board's bus is i2c-0 (a Pi's is i2c-1, the default); provision refuses the key
    bus = "-e 's/^driver = \"ssd1306\"$/&\\ni2c_port = 0/' " if box.options.oled == "ssd1306" else ""
    box.sh(
        f"sed -i -e 's/^\\[device\\]$/[device]\\ntest_mode = true/' {bus}{config}"
        f" && printf '{READER}' >> {config} && systemctl restart mynabox.service"
    )
    return box.check(
        "test_mode_ready_s", box.console.wait(READY, box.options.step_timeout, since) is not None
    )


def check_broker(box: Box) -> bool:
    deadline = time.monotonic() + box.options.step_timeout
    while f"as {DEVICE_ID}" not in box.broker.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    return box.check("broker_connected_s", f"as {DEVICE_ID}" in box.broker.log())


def check_device_nodes(box: Box) -> bool:
    """The simulated chip's and bus's device nodes as the daemon's unit sees them (the image's udev rules)."""
    node = re.findall(r"^node=(.*)$", box.sh("echo node=$(stat -c '%G %a' /dev/gpiochip0)"), re.M)
    print("boot-test: /dev/gpiochip0:", node[-1] if node else "?")
    ok = box.check("gpiochip_group_gpio_s", bool(node) and node[-1] == "gpio 660")
    bus = re.findall(r"^i2c=(.*)$", box.sh("echo i2c=$(stat -c '%G %a' /dev/i2c-0)"), re.M)
    print("boot-test: /dev/i2c-0:", bus[-1] if bus else "?")
    return box.check("i2c_dev_group_i2c_s", bool(bus) and bus[-1] == "i2c 660") and ok


def check_gpio_lines(box: Box) -> bool:
    """The daemon holds the lines through lgpio: buttons as inputs with pull-ups, LED and buzzer as outputs.
    Then the outputs' levels are sampled in the guest every 20 ms through the taps (check_outputs)."""
    pins = pin_map()
    lines = gpio_lines(box.console, pins)
    print("boot-test: lines at READY (kernel debugfs):", lines)
    ok = box.check(
        "gpio_lines_held_s",
        all(lines[b].startswith("input,pull-up (lg)") for b in ("consent", "emergency"))
        and all(lines[o].startswith("output") and "(lg)" in lines[o] for o in ("led", "buzzer")),
    )
    box.sh(
        "(for i in $(seq 3000); do echo $(cat "
        f"{SIM}/sim_gpio{pins['led']}/value {SIM}/sim_gpio{pins['buzzer']}/value); sleep 0.02; done"
        " > /run/mynabox-test-levels) >/dev/null 2>&1 & echo $! > /run/mynabox-test-levels.pid"
    )
    return ok


def gpioinfo_lines(out: str, pins: dict[str, int]) -> dict[str, tuple[str, str]]:
    """(direction, consumer) of each pin's line in `gpioinfo`'s output, by the line's kernel name ("GPIO17").
    libgpiod 2 prints `line 17: "GPIO17" input bias=pull-up consumer="lg"`, libgpiod 1
    `line 17: "GPIO17" "lg" input active-high [used]`; both are read."""
    found = {}
    for function, pin in pins.items():
        line = re.search(rf'^\s*line\s+{pin}:\s+"GPIO{pin}"\s+(.*)$', out, re.M)
        if line is None:
            continue
        rest = line.group(1)
        direction = re.search(r"\b(input|output)\b", rest)
        consumer = re.search(r'consumer="([^"]*)"', rest) or re.match(r'"([^"]*)"', rest)
        found[function] = (
            direction.group(1) if direction else "?",
            consumer.group(1) if consumer else "",
        )
    return found


def check_gpioinfo(box: Box) -> bool:
    """The guest's own libgpiod tools (`gpioinfo`, Debian's gpiod in the image) show the pin map's lines
    held by the daemon, named as the kernel names them: the buttons as inputs, the LED and the buzzer as
    outputs, each with the daemon's consumer name (lgpio's "lg")."""
    pins = pin_map()
    names = "|".join(f"GPIO{p}" for p in pins.values())
    out = box.sh(f"gpioinfo 2>&1 | grep -E '\"({names})\"'")
    for line in re.findall(r"^\s*line\s.*$", out, re.M):
        print("boot-test: gpioinfo:", " ".join(line.split()))
    seen = gpioinfo_lines(out, pins)
    print("boot-test: gpioinfo (direction, consumer) by function:", seen)
    wanted = {"consent": "input", "emergency": "input", "led": "output", "buzzer": "output"}
    return box.check(
        "gpioinfo_lines_held_s",
        all(seen.get(f, ("", ""))[0] == d and seen[f][1] == "lg" for f, d in wanted.items()),
    )


def check_taps(box: Box) -> bool:
    """Two taps through the emulated USB reader, read by the guest's pcscd + libccid; the reference
    service's record of each patient, opened at the receiver, shows the lookup went there. 同意 is pressed
    before the first tap (it counts for the next read), 緊急 after the second read."""
    console, pins = box.console, pin_map()
    drivers = box.sh("echo drivers=$(ls /usr/lib/pcsc/drivers /usr/lib/pcsc/drivers/serial 2>&1)")
    print("boot-test: pcscd's drivers in the image:", " ".join(re.findall(r"^drivers=(.*)$", drivers, re.M)))
    ok = box.check("no_vpcd_in_image_s", "ifd-ccid.bundle" in drivers and "vpcd" not in drivers)
    reader = VscardCard(VirtualMyNumberCard(patient("healthy").card_id), port=box.ccid_port).connect()
    try:
        for n, key in enumerate(("healthy", "warfarin-elderly"), 1):
            since = console.mark()
            if n == 1:
                press(console, pins["consent"])
            t_tap = time.monotonic()
            reader.insert(VirtualMyNumberCard(patient(key).card_id))
            if n == 2:
                time.sleep(5)  # the read takes ~0.1 s; the box then asks for consent
                press(console, pins["emergency"])
            drug = patient(key).prescriptions[0].drug_name
            # Bounded below step_timeout: without a consent press the box makes no lookup (timeout 60 s).
            summary = wait_for_summary(box.received, box.receive, min(box.options.step_timeout, 180), drug)
            if not box.check(f"usb_reader_tap{n}_received_s", summary is not None):
                print((box.work / "receive.log").read_text(errors="replace")[-800:])
                diagnose(console)
                return False
            box.figures[f"tap{n}_to_receiver_s"] = round(time.monotonic() - t_tap, 1)
            time.sleep(1)  # the timing lines follow the PUBACK
            for line in TIMING.findall(console.text(since)):
                print("boot-test: daemon:", line.strip())
            reader.remove()  # out of the field; the next patient's card goes in
            time.sleep(2)
    finally:
        reader.close()
    return ok


def check_consents(box: Box) -> bool:
    """Each tap's consent, as its audit record at the receiver says: only a press could give them."""
    consents = consents_received(box.received)
    print("boot-test: consent of each read (audit records):", consents)
    ok = box.check("consent_press_seen_s", "oral-consent" in consents)
    return box.check("emergency_press_seen_s", "life-saving-exception" in consents) and ok


def retained_state(box: Box, timeout: float = 20.0) -> dict[str, Any] | None:
    """The box's retained `state` document as the broker hands it to a new subscriber, read with the
    gateway's certificate (the only reader the broker's ACL admits). The broker makes the certificate's name
    the client id, so this takes the receiver's session over for a moment: it reconnects (1 s) and
    subscribes again; nothing is in flight then (the taps are over)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from mynabox.tls import client_context

    mqtt = box.work / "vehicle" / "mqtt"
    got: list[bytes] = []
    arrived = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gateway", protocol=paho.MQTTv5)
    client.tls_set_context(client_context(mqtt / "ca.pem", mqtt / "client-gateway.pem",
                                          mqtt / "client-gateway.key"))  # fmt: skip
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"mynabox/{DEVICE_ID}/state", 1)

    def message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            arrived.set()

    client.on_message = message
    client.connect("127.0.0.1", box.broker.port, keepalive=10)
    client.loop_start()
    try:
        arrived.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if not got:
        return None
    doc: dict[str, Any] = json.loads(got[0])
    return doc


def check_display_degraded(box: Box) -> bool:
    """With luma's real ssd1306 driver on the emulated I2C bus that has no display on it: the daemon says
    the display failed and goes on (it reached READY, the taps above were read and delivered), its retained
    state names the display in `failed_parts`, and `mynabox selftest` fails the display check."""
    if box.options.oled != "ssd1306":
        print(f"boot-test: display {box.options.oled}: the degrade path is not run (--oled ssd1306 runs it)")
        return True
    said = [  # since test mode's restart, with the emulated board's bus (i2c-0) in the config
        ln for ln in box.console.text().splitlines() if "display failed at start, the box goes on" in ln
    ]
    for line in said:
        print("boot-test: daemon:", line.strip())
    said = [ln for ln in said if "i2c-0" in ln]
    ok = box.check("display_failed_logged_s", bool(said))
    state = retained_state(box)
    print("boot-test: retained state:", json.dumps(state, ensure_ascii=False))
    failed = str((state or {}).get("failed_parts", "")).split("+")
    ok &= box.check("display_failed_on_state_s", state is not None and "display" in failed)
    # As the unit runs the daemon: its user and groups, its credentials (LoadCredential=), its config.
    creds = " ".join(f"-p LoadCredential={c}:/etc/mynabox/credentials/{c}" for c in CREDENTIALS)
    out = box.sh(
        "systemd-run --wait --pipe --quiet -p User=mynabox -p Group=mynabox "
        f"-p 'SupplementaryGroups=i2c gpio' {creds} /opt/mynabox/venv/bin/mynabox selftest "
        "--config /var/lib/mynabox/identity/config.toml "
        "--timeout 3 2>&1 | grep -A 4 -E '^(ok  |FAIL) (config|display|panel)'",
        timeout=300,
    )
    lines = re.findall(r"^(?:ok  |FAIL) (?:config|display|panel).*$", out, re.M)
    for line in re.findall(r"^(?:ok  |FAIL|  ).*$", out, re.M):  # with a failed check's detail lines
        print("boot-test: selftest:", line)
    ok &= box.check("display_failed_in_selftest_s", any(ln.startswith("FAIL display") for ln in lines))
    return box.check("panel_ok_in_selftest_s", any(ln.startswith("ok   panel") for ln in lines)) and ok


def check_outputs(box: Box) -> bool:
    levels = box.sh("kill $(cat /run/mynabox-test-levels.pid); sort /run/mynabox-test-levels | uniq -c")
    print("boot-test: LED/buzzer levels sampled (count, LED, buzzer):", " ".join(levels.split()))
    samples = [ln.split() for ln in box.sh("cat /run/mynabox-test-levels").splitlines()]
    ok = box.check("led_driven_s", {s[0] for s in samples if len(s) == 2} == {"0", "1"})
    return box.check("buzzer_driven_s", any(s[1] == "1" for s in samples if len(s) == 2)) and ok


def check_watchdog_restart(box: Box) -> bool:
    """A stopped daemon stops pinging; systemd kills it (SIGABRT) and starts it again."""
    console = box.console
    since = console.mark()
    t_stop = time.monotonic()
    box.sh("kill -STOP $(systemctl show -P MainPID mynabox.service)")
    timeout_at = console.wait("mynabox.service: Watchdog timeout", box.options.step_timeout, since)
    back = None if timeout_at is None else console.wait(READY, box.options.step_timeout, timeout_at)
    if not box.check("watchdog_restart_s", back is not None):
        diagnose(console)
        return False
    box.figures["sigstop_to_ready_again_s"] = round(time.monotonic() - t_stop, 1)
    return True


def check_no_daemon_errors(box: Box) -> bool:
    """The daemon logged no error through the boot, the taps and the watchdog restart."""
    errors = [ln for ln in box.console.text().splitlines() if "mynabox[" in ln and DAEMON_ERROR.search(ln)]
    for line in errors[:20]:
        print("boot-test: daemon:", line.strip())
    return box.check("no_daemon_errors_s", not errors)


def check_no_root_writes(box: Box) -> bool:
    """Nothing tried to write to the read-only root (our own probe aside)."""
    ro = [ln for ln in box.console.text().splitlines() if "Read-only file system" in ln and PROBE not in ln]
    for line in ro[:20]:
        print("boot-test: wrote to the root:", line.strip())
    return box.check("no_root_writes_s", not ro)


def check_update_parts(box: Box) -> bool:
    """RAUC's side of updates in the running image: its service answers over D-Bus with slot A booted,
    mynabox-health is checking slot A, and the modules a verity bundle needs
    are loaded."""
    health = box.sh(
        "systemctl is-active mynabox-health.service; systemctl show -P Result mynabox-health.service"
    )
    status = box.sh("rauc status --output-format=json 2>&1 | tail -n 1", timeout=120)
    print("boot-test: mynabox-health:", " ".join(health.split()[-2:]))
    found = re.search(r"^\{.*\}$", status, re.M)
    doc: dict[str, Any] = json.loads(found.group(0)) if found else {}
    print(
        "boot-test: rauc status:",
        json.dumps({k: doc.get(k) for k in ("compatible", "booted", "boot_primary")}),
    )
    ok = box.check("rauc_booted_a_s", doc.get("booted") == "A")
    good = box.sh("/opt/mynabox/venv/bin/mynabox update status 2>&1 | tail -n 5")
    print("boot-test: mynabox update status:", " ".join(good.split()[-12:]))
    mods = box.sh("echo mods=$(for m in loop dm_verity squashfs nbd; do "
                  "test -d /sys/module/$m && echo $m; done)")  # fmt: skip
    loaded = re.findall(r"^mods=(.*)$", mods, re.M)
    print("boot-test: modules for bundles:", loaded[-1] if loaded else "?")
    ok &= box.check("bundle_modules_loaded_s", bool(loaded) and set(loaded[-1].split()) >= {
        "loop", "dm_verity", "squashfs", "nbd"})  # fmt: skip
    # Type=exec: "active"/"success" only says it started. It must be under way on slot A (no config
    # refusal); it cannot mark A good here, since this test's display fails on purpose and the self-test
    # needs it: the update test (display "dummy") proves the marking.
    # On a slow host this look may come after the check's limit: then it has ended, and its verdict must
    # be the display alone (this test's) and staying on A (B holds nothing).
    started = box.console.wait("health: slot A booted; healthy within", 30, 0) is not None
    text = box.console.text()
    ended_as_meant = (
        "health: slot A is not healthy: self-test not passed (display:" in text
        and "slot B is not bootable either: staying on A" in text
    )
    under_way = "success" in health.split()
    return box.check("health_check_started_s", started and (under_way or ended_as_meant)) and ok


def softdog_handover(console: str) -> dict[str, Any]:
    """The first boot's softdog story in the console's text (kernel time stamps, seconds since the kernel
    started): its load and margin, whether it was armed, what PID 1 opened, the handover's line, and the
    load → disarm span (None where a line is missing)."""
    text = plain(console)
    loaded, armed = SOFTDOG_LOADED.search(text), SOFTDOG_ARMED.search(text)
    held, disarmed, probed = PID1_HOLDS.search(text), DISARMED.search(text), HW_PROBED.search(text)
    at = {k: None if m is None else float(m.group(1)) for k, m in
          (("loaded", loaded), ("held", held), ("disarmed", disarmed), ("probed", probed))}  # fmt: skip
    span = None if at["loaded"] is None or at["disarmed"] is None else at["disarmed"] - at["loaded"]
    return {
        "margin_s": None if loaded is None else int(loaded.group(2)),
        "armed": armed is not None and armed.group(2) == "1",
        "pid1_watchdog": None if held is None else held.group(2),
        "pid1_device": None if held is None else held.group(3),
        "disarmed": None if disarmed is None else disarmed.group(2),
        "loaded_at_s": at["loaded"],
        "hw_driver_at_s": at["probed"],
        "armed_before_hw_driver": None
        if at["loaded"] is None or at["probed"] is None
        else at["loaded"] <= at["probed"],
        "held_at_s": at["held"],
        "disarmed_at_s": at["disarmed"],
        "load_to_disarm_s": None if span is None else round(span, 2),
    }


def check_softdog_handover(box: Box) -> bool:
    """The boot's softdog was armed at its load, PID 1 opened the hardware watchdog (qemu's i6300esb) through
    the udev link, and the handover disarmed softdog only after that, within its margin; the link names
    the i6300esb's device and softdog is inactive now."""
    seen = softdog_handover(box.console.text())
    print("boot-test: softdog:", json.dumps(seen))
    ok = box.check("softdog_armed_s", seen["armed"] and seen["margin_s"] is not None)
    ok &= box.check(
        "pid1_holds_hardware_watchdog_s",
        seen["pid1_watchdog"] == "i6300ESB timer" and seen["pid1_device"] == "/dev/watchdog-hw",
    )
    in_order = None not in (seen["held_at_s"], seen["disarmed_at_s"], seen["load_to_disarm_s"])
    ok &= box.check(
        "softdog_disarmed_after_pid1_s",
        in_order
        and seen["held_at_s"] <= seen["disarmed_at_s"]
        and seen["load_to_disarm_s"] < seen["margin_s"]
        and "PID 1 holds the hardware watchdog 'i6300ESB timer'" in (seen["disarmed"] or ""),
    )
    # softdog is armed before udev loads the i6300esb's driver, which stops a timer a trial boot's stage
    # armed (mynabox-boot.cmd): no gap between the two.
    ok &= box.check("softdog_armed_before_the_hardware_driver_s", seen["armed_before_hw_driver"] is True)
    if seen["load_to_disarm_s"] is not None:
        box.figures["softdog_load_to_disarm_s"] = seen["load_to_disarm_s"]
    if seen["loaded_at_s"] is not None:
        box.figures["kernel_to_softdog_s"] = seen["loaded_at_s"]  # what only the early watchdog covers
    now = box.sh(
        "hw=$(readlink -f /dev/watchdog-hw); echo hw=${hw##*/},$(cat /sys/class/watchdog/${hw##*/}/identity);"
        " for d in /sys/class/watchdog/*; do"
        " grep -q Software $d/identity && echo soft=${d##*/},$(cat $d/state); done"
    )
    hw, soft = re.findall(r"^hw=(.*)$", now, re.M), re.findall(r"^soft=(.*)$", now, re.M)
    print("boot-test: watchdogs now:", hw[-1:] or "(no link)", soft[-1:] or "(no softdog)")
    ok &= box.check("watchdog_link_names_hardware_s", bool(hw) and hw[-1].endswith(",i6300ESB timer"))
    return box.check("softdog_inactive_s", bool(soft) and soft[-1].endswith(",inactive")) and ok


def check_hardware_watchdog(box: Box) -> bool:
    """PID 1 holds the hardware watchdog; a crashed kernel (sysrq c, with the slot's panic=10 set back to
    the kernel's own 0 first, so it does not reboot by itself: otherwise panic=10 and not the watchdog would
    reset it) stops its pings, the i6300esb resets the machine, U-Boot boots slot A
    again, and the box comes back: the second boot grows nothing, takes no identity (the FAT has none left)
    and the daemon is READY again."""
    console, timeout = box.console, box.options.step_timeout
    held = re.findall(r"^wd=(.*)$", box.sh(
        "hw=$(readlink -f /dev/watchdog-hw); hw=/sys/class/watchdog/${hw##*/};"
        " echo wd=$(cat $hw/identity),$(cat $hw/state)"
    ), re.MULTILINE)  # fmt: skip
    print("boot-test: hardware watchdog:", held[-1] if held else "(none)")
    time.sleep(5)  # let the journal settle before the crash
    since = console.mark()
    crash = "echo 0 > /proc/sys/kernel/panic; echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger"
    console.sh(crash, timeout=5)
    t_crash = time.monotonic()
    panic = console.wait("Kernel panic", 60, since)
    rebooted = None if panic is None else console.wait("Linux version", timeout, panic)
    by_itself = panic is not None and "Rebooting in" in console.text(panic)[:4000]
    if not box.check("hardware_watchdog_reset_s", rebooted is not None and not by_itself):
        return False
    print(f"boot-test: crash to reset {time.monotonic() - t_crash:.1f} s")
    assert rebooted is not None
    ok = box.check("uboot_slot_a_again_s", console.slots(panic or since)[:1] == ["A"])
    back = console.wait(READY, timeout, rebooted, fail=FAILED)
    second = console.text(rebooted)
    ok &= box.check("ready_after_reset_s", back is not None)
    print(f"boot-test: crash to READY again {time.monotonic() - t_crash:.1f} s")
    return box.check("second_boot_grows_nothing_s", "already fills" in second) and ok


# In order: each later one relies on what the earlier ones did (test mode before the taps, the sampler
# started by check_gpio_lines read by check_outputs, the hardware watchdog's reset last).
CHECKS: list[Check] = [
    check_layout,
    check_test_mode,
    check_broker,
    check_device_nodes,
    check_gpio_lines,
    check_gpioinfo,
    check_taps,
    check_consents,
    check_display_degraded,
    check_outputs,
    check_watchdog_restart,
    check_no_daemon_errors,
    check_no_root_writes,
    check_update_parts,
    check_softdog_handover,
    check_hardware_watchdog,
]


def run_checks(box: Box, checks: list[Check]) -> bool:
    """check_ready first (nothing else can run without it), then every check, whatever the earlier gave."""
    if not check_ready(box):
        return False
    ok = True
    for check in checks:
        ok = check(box) and ok
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for READY")
    parser.add_argument("--step-timeout", type=float, default=600.0, help="seconds for each later check")
    parser.add_argument("--keep", type=Path, help="keep the work files (image, console log) here")
    # ssd1306 by default: the kernel path is there (i2c-stub's /dev/i2c-0, no display at 0x3c), so the box
    # runs luma's real driver and degrades; dummy only for a run that is about something else.
    parser.add_argument(
        "--oled",
        choices=sorted(DISPLAY),
        default="ssd1306",
        help="ssd1306 (default): luma's real driver on the emulated I2C bus with no display on it (the "
        "degrade path); dummy: luma's dummy device, the display checks not run",
    )
    parser.add_argument(
        "--modules", type=Path, help="a directory with gpiosim.ko and i2c-stub.ko for the image's kernel"
    )
    parser.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="LOCAL=GUEST",
        help="put a local file in place of one in the test copy's root (try a fix without a rebuild)",
    )
    args = parser.parse_args()
    # SIGTERM (a killed run) must still end qemu and the host's services: turn it into an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = Options(
        out=args.out, keep=args.keep, oled=args.oled, modules=args.modules, timeout=args.timeout,
        step_timeout=args.step_timeout,
        replace=tuple((Path(a).resolve(), b) for a, b in (r.split("=", 1) for r in args.replace)),
    )  # fmt: skip
    with launch(options) as box:
        ok = run_checks(box, CHECKS)
    figures = box.figures
    figures["fat_fragments_after"] = leaked(box.image, box.keys)
    if figures["fat_fragments_after"]:
        print("boot-test: provisioning secrets can still be read from the image")
        ok = False
    print(json.dumps(figures))
    return exit_code(ok, box.work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
