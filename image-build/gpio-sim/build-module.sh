#!/usr/bin/env bash
# Builds gpio-sim and i2c-stub for the image's kernel, out of tree, for the boot test's copy only: never in
# the image.
# Debian's arm64 6.12 kernel has no gpio-sim (CONFIG_GPIO_SIM and the IRQ_SIM it selects are unset), so
# the boot test cannot press a button through the kernel's GPIO without it. Sources: drivers/gpio/gpio-sim.c,
# its private drivers/gpio/gpiolib.h and kernel/irq/irq_sim.c from Debian's linux-source of the same
# version, linked into one module (gpiosim.ko) against Debian's linux-headers in an arm64 trixie chroot
# (qemu-user), with the kernel's own compiler. One edit: irq_sim's handler calls generic_handle_irq()
# (exported) instead of handle_simple_irq(irq_to_desc()) (irq_to_desc is not exported to modules).
# i2c-stub (CONFIG_I2C_STUB unset too) gives the emulated board an I2C bus, /dev/i2c-N, with no display
# on it. CONFIG_MODULE_SIG_FORCE is unset, so the unsigned modules load (they taint the test kernel).
#   image-build/gpio-sim/build-module.sh KERNEL_RELEASE OUT_DIR   (as root; e.g. 6.12.118+deb13-arm64)
# writes OUT_DIR/gpiosim.ko and OUT_DIR/i2c-stub.ko.
set -euo pipefail
krel=$1
out=$(realpath -m "$2")
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MYNABOX_IMAGE_CACHE:-$here/cache}
version=${krel%%+*}   # 6.12.118
series=${version%.*}  # 6.12
mkdir -p "$cache/apt"
# The source package's tarball is unpacked on the host (native xz), only the three files the module needs.
# shellcheck disable=SC2016  # $1 is mmdebstrap's, expanded in its hooks
nice -n 19 mmdebstrap --arch=arm64 --variant=apt --components=main \
  --aptopt='APT::Install-Recommends "false"' \
  --include="linux-headers-$krel,linux-source-$series,gcc-14,make" \
  --skip=download/empty --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in '$cache/apt' /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives '$cache/apt'" \
  --customize-hook='mkdir -p "$1/build"' \
  --customize-hook="tar -xJf \"\$1/usr/src/linux-source-$series.tar.xz\" -C \"\$1/build\" --strip-components=3 \
    linux-source-$series/drivers/gpio/gpio-sim.c linux-source-$series/drivers/gpio/gpiolib.h \
    linux-source-$series/kernel/irq/irq_sim.c linux-source-$series/drivers/i2c/i2c-stub.c" \
  --customize-hook='sed -i "s/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/" "$1/build/irq_sim.c"' \
  --customize-hook='grep -q "generic_handle_irq(irqnum)" "$1/build/irq_sim.c"' \
  --customize-hook='printf "obj-m := gpiosim.o i2c-stub.o\ngpiosim-y := gpio-sim.o irq_sim.o\n" > "$1/build/Kbuild"' \
  --customize-hook="chroot \"\$1\" make -s -C /usr/src/linux-headers-$krel M=/build modules" \
  --customize-hook="copy-out /build/gpiosim.ko /build/i2c-stub.ko '$out'" \
  trixie /dev/null
echo "build-module: built $out/gpiosim.ko $out/i2c-stub.ko"
