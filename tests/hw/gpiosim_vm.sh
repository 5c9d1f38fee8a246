#!/usr/bin/env bash
# The box's panel on a real kernel GPIO chip: Debian's own amd64 kernel in qemu, with gpio-sim (which Debian
# does not build: compiled here out of tree from Debian's kernel source, irq_sim included) configured as a
# chip labelled pinctrl-bcm2835 whose lines are named GPIO2/3/17/22/23/27 like a Pi's device tree gives them.
# The guest mounts this machine's root read-only over 9p and runs tests/hw/gpiosim_guest.py with the
# project's venv: lgpio through gpiozero, the chip found by its label, presses driven from gpio-sim's sysfs;
# and luma's ssd1306 on a kernel I2C bus (i2c-stub, also Debian's) for the display's degrade path.
# Downloads Debian's kernel image and source packages once (~210 MB, cached); then ~1 min a run (TCG).
# Usage: tests/hw/gpiosim_vm.sh   (make gpio-vm). Exit 0 when every guest check passed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MYNABOX_GPIOSIM_CACHE:-/var/tmp/mynabox-gpiosim}
mkdir -p "$cache"
cd "$cache"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || { $SUDO apt-get update -qq; kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
kver=${kpkg#linux-image-}                       # e.g. 6.1.0-57-amd64
series=$(echo "$kver" | cut -d. -f1,2)          # e.g. 6.1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  qemu-system-x86 busybox-static "linux-headers-$kver" >/dev/null

if [ ! -f "kernel/boot/vmlinuz-$kver" ]; then
  apt-get download -qq "$kpkg" 2>/dev/null
  rm -rf kernel && dpkg-deb -x "${kpkg}"_*.deb kernel && rm -f "${kpkg}"_*.deb
fi
if [ ! -f src/gpio-sim.c ]; then
  apt-get download -qq "linux-source-$series" 2>/dev/null
  mkdir -p src
  dpkg-deb --fsys-tarfile "linux-source-${series}"_*.deb | tar -xO "./usr/src/linux-source-$series.tar.xz" \
    | tar -xJ -C src --strip-components=3 "linux-source-$series/drivers/gpio/gpio-sim.c" \
      "linux-source-$series/drivers/gpio/gpiolib.h"
  dpkg-deb --fsys-tarfile "linux-source-${series}"_*.deb | tar -xO "./usr/src/linux-source-$series.tar.xz" \
    | tar -xJ -C src --strip-components=3 "linux-source-$series/kernel/irq/irq_sim.c"
  rm -f "linux-source-${series}"_*.deb
  # irq_to_desc() is not exported to modules; generic_handle_irq_safe() does the same for a simple irq.
  sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq_safe(irqnum);/' src/irq_sim.c
  printf 'obj-m := gpio_sim_oot.o\ngpio_sim_oot-objs := gpio-sim.o irq_sim.o\n' > src/Makefile
fi
[ -f src/gpio_sim_oot.ko ] || make -s -C "/usr/src/linux-headers-$kver" M="$cache/src" modules >/dev/null

rm -rf initrd && mkdir -p initrd/{bin,proc,sys,dev,host,mods}
cp /bin/busybox initrd/bin/
for tool in sh mount insmod mkdir cat chroot poweroff ls; do ln -s busybox "initrd/bin/$tool"; done
mods=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p configfs
  i2c-dev)
for m in "${mods[@]}"; do cp "$(find "kernel/lib/modules/$kver" -name "$m.ko")" initrd/mods/; done
cp src/gpio_sim_oot.ko "$(find "kernel/lib/modules/$kver" -name i2c-stub.ko)" initrd/mods/
cat > initrd/init <<INIT
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ${mods[*]} gpio_sim_oot; do insmod /mods/\$m.ko || echo "insmod \$m failed"; done
insmod /mods/i2c-stub.ko chip_addr=0x3c  # a kernel I2C bus answering SMBus writes at the OLED's address
mount -t configfs none /sys/kernel/config
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /host
G=/sys/kernel/config/gpio-sim/box
mkdir \$G \$G/bank0
echo 28 > \$G/bank0/num_lines
echo pinctrl-bcm2835 > \$G/bank0/label
for n in 2 3 17 22 23 27; do mkdir \$G/bank0/line\$n; echo GPIO\$n > \$G/bank0/line\$n/name; done
echo 1 > \$G/live
SIM=/sys/devices/platform/\$(cat \$G/dev_name)/\$(cat \$G/bank0/chip_name)
echo "gpio-sim: \$SIM"
mount --bind /proc /host/proc; mount --bind /sys /host/sys; mount --bind /dev /host/dev
mount -t tmpfs tmpfs /host/run; mount -t tmpfs tmpfs /host/tmp; mkdir /host/run/mynabox
chroot /host /bin/sh -c "cd /run/mynabox && HOME=/tmp $repo/.venv/bin/python $repo/tests/hw/gpiosim_guest.py \$SIM" 2>&1
echo "guest-exit=\$?"
poweroff -f
INIT
chmod +x initrd/init
(cd initrd && find . | busybox cpio -o -H newc 2>/dev/null | gzip) > initrd.gz

# TCG with every CPU feature: the venv's interpreter may use instructions qemu's default CPU lacks.
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 2048 -smp 2 -nographic -no-reboot -nic none \
  -kernel "kernel/boot/vmlinuz-$kver" -initrd initrd.gz -append "console=ttyS0 panic=-1 loglevel=4" \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=host | tr -d '\r' | tee console.log | grep -v '^\s*$' \
  | sed -n '/gpio-sim: /,$p'
grep -q '^ALL-OK' console.log
