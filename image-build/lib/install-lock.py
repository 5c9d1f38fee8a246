"""Prints the lock the image's venv is installed from: the committed lock, plus for each wheel built here
from a locked sdist that wheel's own hash, plus the firmware wheel. pip then checks every file it installs.

usage: install-lock.py LOCK WHEEL_DIR FIRMWARE_WHEEL
"""

import hashlib
import re
import sys
from pathlib import Path


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    lock, wheel_dir, firmware = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    wheels = {}
    for whl in sorted(wheel_dir.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        wheels[norm(name)] = (version, sha256(whl))
    out = []
    for raw in lock.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *hashes = line.split()
        name, version = spec.split("==")
        have = wheels.pop(norm(name), None)
        if have is None or have[0] != version:
            print(f"install-lock: no wheel for {spec} in {wheel_dir}", file=sys.stderr)
            return 1
        wheel_hash = f"--hash=sha256:{have[1]}"
        if wheel_hash not in hashes:
            hashes.append(wheel_hash)  # built here from the sdist whose hash the lock holds
        out.append(" ".join([spec, *hashes]))
    if wheels:
        print(f"install-lock: wheels not in the lock: {', '.join(sorted(wheels))}", file=sys.stderr)
        return 1
    fw_name, fw_version = firmware.name.split("-")[:2]
    out.append(f"{fw_name}=={fw_version} --hash=sha256:{sha256(firmware)}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
