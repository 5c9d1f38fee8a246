#!/usr/bin/env bash
# Installs everything mynabox's tests, demo and benchmarks need on a fresh Debian 12 machine:
# the Debian packages (only those missing) and a virtualenv at .venv with the pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  pcscd libpcsclite-dev vsmartcard-vpcd opensc   # PC/SC stack, the virtual reader, OpenSC as a peer
  swig                                           # builds pyscard where no wheel fits
  mosquitto mosquitto-clients                    # the broker the tests start on loopback
  mosquitto-dev libmosquitto-dev gcc libc6-dev   # builds the broker plugin mynabox_retain (data/broker)
  fonts-misaki fonts-unifont                     # the OLED's Japanese bitmap fonts
  iproute2 util-linux procps                     # unshare, ss, pgrep for the test harness
  fuse3                                          # fusermount3 and libfuse3 for the power-cut tests
  python3-cryptography                           # bench_imports' peer: Debian's build on the system libcrypto
  chromium chromium-driver fonts-ipafont-gothic  # the gateway page tests: a real browser, a Japanese font
  nats-server                                    # the central broker cluster of the fleet tests (JetStream, MQTT)
  mtools dosfstools shellcheck                   # fleet ops: provisioning / first-boot tests on FAT images
  fdisk e2fsprogs                                # the state partition grower's test on a loop device
  u-boot-tools qemu-system-arm                   # updates: boot.scr under Debian's U-Boot in qemu (tests/update)
  debian-archive-keyring                         # verifies trixie's u-boot-qemu (scripts/fetch-u-boot-qemu)
  rauc dbus-daemon dbus-bin squashfs-tools       # updates: RAUC with our bootloader backend, signed bundles
  device-tree-compiler                           # dtc for the DTB check (qemu-system-arm: also the VSCard test)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: apt packages missing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The U-Boot the boot scripts are tested under: the release the image ships (trixie's u-boot-qemu, pinned in
# scripts/u-boot-qemu.pin), not Debian 12's own u-boot-qemu. Fetched once, as root, into UBOOT_QEMU_DIR.
uboot_dir=$(sed -n 's/^UBOOT_QEMU_DIR=//p' scripts/u-boot-qemu.pin)
if [ ! -f "$uboot_dir/usr/lib/u-boot/qemu_arm64/u-boot.bin" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO scripts/fetch-u-boot-qemu
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.mynabox-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ testkit/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # The firmware and its test kit (testkit/: the demo, vcard, refsvc and the tests need it; the image does not).
  # PYPI=1: where lgpio has no wheel, its sdist then builds a self-contained module (else it wants liblgpio)
  PYPI=1 .venv/bin/pip install -q -e '.[dev]' -e ./testkit
  touch "$stamp"
fi

# The interop test's gateway in another language: Node.js with the stock jose library, from the lock file.
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
node_dir=tests/interop/node
if [ ! -d "$node_dir/node_modules/jose" ] || [ ! -d "$node_dir/node_modules/@asyncapi/parser" ] \
  || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
fi
