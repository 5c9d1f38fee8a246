"""What a Raspberry Pi reads at boot, checked on the device trees the image ships.

usage: check-dtbs.py facts KERNEL_PACKAGE DTB... > facts.json
                                                     the facts of each DTB (flattened device tree, read here)
       check-dtbs.py check FACTS_JSON CONFIG_TXT [BOOT_DIR]
                                                     checks the facts against config.txt; exit 1 on a failure

Facts per DTB: its model, whether an I2C controller muxed to GPIO 2/3 (function ALT0) is enabled, the
watchdog node (bcm2835's power-management block, whose driver is bcm2835_wdt), the GPIO block's line names
(what the kernel calls each line; the boot test's simulated chip takes the Pi 3 B+'s), the `__overrides__`
names (what `dtparam=` can set: the Raspberry Pi kernel's DTBs carry them, upstream DTBs do not) and whether
`__symbols__` is there (what a `dtoverlay=` needs to apply). The check: for every board the image supports,
I2C on GPIO 2/3 and the watchdog are enabled, every `dtparam` of config.txt is an override of the DTB, and
every `dtoverlay` is a file in BOOT_DIR/overlays (Debian ships none), and the slot's boot stage
(image-build/boot/mynabox-boot.cmd) arms each board's PM watchdog where the DTB puts it (`cpu_address`:
its `reg` through the parents' `ranges`). The build runs both on the DTBs it
puts on the FAT partition; tests/image_build/test_dtbs.py runs `check` on the committed facts of Debian's
DTBs (image-build/dtb-facts.json) and `facts` on small DTBs compiled from source.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path
from typing import Any

# Boards the image supports (README: Boards) by their upstream DTB names; the Pi 5 is reported, not required.
SUPPORTED = (
    "bcm2837-rpi-3-b",
    "bcm2837-rpi-3-b-plus",
    "bcm2837-rpi-zero-2-w",
    "bcm2711-rpi-4-b",
    "bcm2711-rpi-400",
    "bcm2711-rpi-cm4-io",
)
REPORTED = ("bcm2712-rpi-5-b",)
I2C = ("brcm,bcm2835-i2c", "brcm,bcm2711-i2c")
WATCHDOG = ("brcm,bcm2835-pm-wdt", "brcm,bcm2835-pm", "brcm,bcm2712-pm")
GPIO = ("brcm,bcm2835-gpio", "brcm,bcm2711-gpio")  # the SoC's GPIO block: the 40-pin header's lines
ALT0 = 4  # BCM2835_FSEL_ALT0: SDA1/SCL1 on GPIO 2/3

Node = dict[str, Any]  # {"props": {name: bytes}, "children": {name: Node}}


def parse_fdt(blob: bytes) -> Node:
    """The flattened device tree's node tree (devicetree specification, §5)."""
    magic, _size, off_struct, off_strings = struct.unpack_from(">IIII", blob)
    if magic != 0xD00DFEED:
        raise ValueError("not a flattened device tree")
    root: Node = {"props": {}, "children": {}}
    stack: list[Node] = []
    pos = off_struct
    while True:
        (token,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if token == 1:  # BEGIN_NODE
            end = blob.index(b"\0", pos)
            name = blob[pos:end].decode()
            pos = (end + 4) & ~3
            node = root if not stack else {"props": {}, "children": {}}
            if stack:
                stack[-1]["children"][name] = node
            stack.append(node)
        elif token == 2:  # END_NODE
            stack.pop()
        elif token == 3:  # PROP
            length, nameoff = struct.unpack_from(">II", blob, pos)
            pos += 8
            name_end = blob.index(b"\0", off_strings + nameoff)
            stack[-1]["props"][blob[off_strings + nameoff : name_end].decode()] = blob[pos : pos + length]
            pos = (pos + length + 3) & ~3
        elif token == 4:  # NOP
            continue
        elif token == 9:  # END
            return root
        else:
            raise ValueError(f"bad token {token} at {pos - 4}")


def walk(node: Node, path: str = "") -> list[tuple[str, Node]]:
    found = [(path or "/", node)]
    for name, child in node["children"].items():
        found += walk(child, f"{path}/{name}")
    return found


def strings(value: bytes | None) -> list[str]:
    return [s.decode() for s in (value or b"").split(b"\0") if s]


def cells(value: bytes | None) -> list[int]:
    value = value or b""
    return list(struct.unpack(f">{len(value) // 4}I", value[: len(value) // 4 * 4]))


def enabled(node: Node) -> bool:
    return strings(node["props"].get("status")) in ([], ["okay"], ["ok"])


def cpu_address(root: Node, path: str) -> int | None:
    """Where the CPU sees the first `reg` address of the node at `path`, through each parent's `ranges`
    (child address, parent address, size; cell counts from the parents' #address-cells / #size-cells). None
    when a parent has no `ranges` (not memory-mapped) or no range covers the address."""
    parts = [p for p in path.split("/") if p]
    chain = [root]
    for name in parts:
        chain.append(chain[-1]["children"][name])

    def count(node: Node, prop: str, default: int) -> int:
        found = cells(node["props"].get(prop))
        return found[0] if found else default

    def number(words: list[int]) -> int:
        value = 0
        for w in words:
            value = value << 32 | w
        return value

    parent = chain[-2]
    reg = cells(chain[-1]["props"].get("reg"))
    width = count(parent, "#address-cells", 2)
    if len(reg) < width:
        return None
    address = number(reg[:width])
    for level in range(len(chain) - 2, 0, -1):  # from the node's parent up to the root's child
        bus, above = chain[level], chain[level - 1]
        if "ranges" not in bus["props"]:
            return None
        child_w, parent_w = count(bus, "#address-cells", 2), count(above, "#address-cells", 2)
        size_w = count(bus, "#size-cells", 1)
        entries = cells(bus["props"]["ranges"])
        if not entries:
            continue  # an empty ranges: the same addresses above
        step = child_w + parent_w + size_w
        for i in range(0, len(entries) - step + 1, step):
            child = number(entries[i : i + child_w])
            size = number(entries[i + child_w + parent_w : i + step])
            if child <= address < child + size:
                address = number(entries[i + child_w : i + child_w + parent_w]) + address - child
                break
        else:
            return None
    return address


def facts(blob: bytes) -> dict[str, Any]:
    root = parse_fdt(blob)
    nodes = walk(root)
    by_phandle = {cells(n["props"]["phandle"])[0]: n for _, n in nodes if "phandle" in n["props"]}
    i2c: list[dict[str, Any]] = []
    watchdog: list[dict[str, Any]] = []
    gpio_names: list[str] = []
    for path, node in nodes:
        compatible = strings(node["props"].get("compatible"))
        if any(c in I2C for c in compatible):
            groups = [by_phandle.get(p) for p in cells(node["props"].get("pinctrl-0"))]
            pins = sorted({pin for g in groups if g for pin in cells(g["props"].get("brcm,pins"))})
            functions = {f for g in groups if g for f in cells(g["props"].get("brcm,function"))}
            if {2, 3} <= set(pins) and functions == {ALT0}:
                i2c.append({"path": path, "enabled": enabled(node)})
        if any(c in GPIO for c in compatible):
            gpio_names = strings(node["props"].get("gpio-line-names"))
        if any(c in WATCHDOG for c in compatible):
            arm = cpu_address(root, path)
            watchdog.append({
                "path": path, "compatible": compatible, "enabled": enabled(node),
                "cpu_address": None if arm is None else f"{arm:x}",  # what the boot stage writes to
            })  # fmt: skip
    children = root["children"]
    return {
        "model": (strings(root["props"].get("model")) or ["?"])[0],
        "i2c_gpio2_3": i2c,
        "watchdog": watchdog,
        "overrides": sorted(children.get("__overrides__", {"props": {}})["props"]),
        "symbols": "__symbols__" in children,
        "gpio_line_names": gpio_names,  # what the kernel calls each line (gpioinfo, the character device)
    }


def config_lines(config_txt: str) -> tuple[list[str], list[str]]:
    """The dtparam names and dtoverlay names config.txt sets (section filters such as [pi4] ignored)."""
    params: list[str] = []
    overlays: list[str] = []
    for raw in config_txt.splitlines():
        line = raw.split("#", 1)[0].strip()
        if m := re.fullmatch(r"dtparam\s*=\s*(.+)", line):
            params += [p.split("=", 1)[0].strip() for p in m.group(1).split(",") if p.strip()]
        elif m := re.fullmatch(r"dtoverlay\s*=\s*([^,:]+).*", line):
            overlays.append(m.group(1).strip())
    return params, overlays


STAGE = Path(__file__).resolve().parents[1] / "boot" / "mynabox-boot.cmd"  # the slot's boot stage


def stage_table(stage: str) -> dict[str, str]:
    """The boot stage's early-watchdog table: U-Boot's fdtfile → where it writes the PM block."""
    table: dict[str, str] = {}
    pattern = (
        r'for mb_f in ([^;]+); do\s+if test "\$\{fdtfile\}" = "\$\{mb_f\}"; then setenv mb_pm ([0-9a-f]+);'
    )
    for names, address in re.findall(pattern, stage):
        table.update(dict.fromkeys(names.split(), address))
    return table


def check(all_facts: dict[str, Any], config_txt: str, boot_dir: Path | None, stage: str = "") -> list[str]:
    dtbs = all_facts["dtbs"]
    table = stage_table(stage)
    problems = [f"{name}.dtb: not shipped" for name in SUPPORTED if name not in dtbs]
    params, overlays = config_lines(config_txt)
    for name in [n for n in SUPPORTED if n in dtbs]:
        f = dtbs[name]
        if not any(i["enabled"] for i in f["i2c_gpio2_3"]):
            problems.append(f"{name}: no enabled I2C controller on GPIO 2/3 (the OLED's bus)")
        if not any(w["enabled"] for w in f["watchdog"]):
            problems.append(f"{name}: no enabled watchdog node (bcm2835_wdt)")
        arm = {w["cpu_address"] for w in f["watchdog"] if w["enabled"]}
        if stage and table.get(f"broadcom/{name}.dtb") not in arm:
            problems.append(
                f"{name}: the boot stage arms a PM watchdog at {table.get(f'broadcom/{name}.dtb')}, "
                f"the DTB has it at {', '.join(sorted(a or '?' for a in arm)) or 'none'}"
            )
        problems += [f"{name}: dtparam={p} is not an override of this DTB" for p in params
                     if p not in f["overrides"]]  # fmt: skip
        if overlays and not f["symbols"]:
            problems.append(f"{name}: dtoverlay needs __symbols__, which this DTB lacks")
    for overlay in overlays:
        if boot_dir is None or not (boot_dir / "overlays" / f"{overlay}.dtbo").is_file():
            problems.append(f"dtoverlay={overlay}: no overlays/{overlay}.dtbo on the boot partition")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "facts":
        out: dict[str, Any] = {"kernel": argv[1], "dtbs": {}}
        for p in argv[2:]:
            try:
                out["dtbs"][Path(p).name.removesuffix(".dtb")] = facts(Path(p).read_bytes())
            except (OSError, ValueError, IndexError, struct.error) as err:
                print(f"check-dtbs: {p}: not a readable device tree ({err})", file=sys.stderr)
                return 1
        print(json.dumps(out, indent=1, ensure_ascii=False, sort_keys=True))
        return 0
    if len(argv) in (3, 4) and argv[0] == "check":
        all_facts = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        boot_dir = Path(argv[3]) if len(argv) == 4 else None
        stage = STAGE.read_text(encoding="utf-8")
        problems = check(all_facts, Path(argv[2]).read_text(encoding="utf-8"), boot_dir, stage)
        for name in (*SUPPORTED, *REPORTED):
            if f := all_facts["dtbs"].get(name):
                i2c = ", ".join(f"{i['path']} {'on' if i['enabled'] else 'off'}" for i in f["i2c_gpio2_3"])
                wd = ", ".join(f"{w['path']} {'on' if w['enabled'] else 'off'}" for w in f["watchdog"])
                print(f"check-dtbs: {name} ({f['model']}): I2C on GPIO 2/3: {i2c or 'none'}; "
                      f"watchdog: {wd or 'none'}; overrides: {len(f['overrides'])}")  # fmt: skip
        for problem in problems:
            print(f"check-dtbs: FAIL {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
