# mynabox boot script, the slot's second stage (U-Boot hush; `mkimage -A arm64 -T script -C none -d
# mynabox-boot.cmd mynabox-boot.scr`, image-build/boot/install-boot-files): /boot/mynabox-boot.scr in each
# root slot. The FAT stub (boot.cmd, boot.scr on p1, never updated by a bundle) chooses the slot, spends
# its try, writes the boot state and then loads this file from the chosen slot and sources it. Everything
# after the choice lives here, in the slot, so it travels with every bundle and lands atomically with the
# slot's kernel: a fix to it reaches the field (two were needed before it moved here: panic=10 and the Pi
# device tree copy below).
#
# What the stub hands over (its contract; stubs flashed on cards in the field never change, so this file
# must keep working with every one of them): mb_stub (1), mb_dev ("devtype devnum"), mb_fat (the FAT
# partition), mb_slot (A or B), mb_part (2 or 3), mb_state (what the stub found of the boot state:
# ok|copy0-bad|copy1-bad|both-bad), and U-Boot's own environment (board, kernel_addr_r, fdtfile,
# fdtcontroladdr), and the boot state the stub wrote (BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT: every stub
# sets them; a BOOT_ORDER word trialA/trialB, which the stub ignores, says that slot is on trial). This file ends in booti; if it returns, the stub says so and resets (the try is spent).
# It must set mb_stage first: the stub tells a stage that ran and returned from one that did not run.
# The stub loads at most 64 KiB of it (install-boot-files refuses a bigger one).
setenv mb_stage 1
echo "mynabox: slot ${mb_slot}: boot stage of the slot (/boot/mynabox-boot.scr), stub ${mb_stub}"
part uuid ${mb_dev}:${mb_part} mb_partuuid

# The early watchdog, for a slot on trial only (made primary by an install, not yet marked good: the box's
# bootloader backend puts the word trial<SLOT> in BOOT_ORDER; mark-good takes it out). softdog covers a hang
# only from the initramfs on (its init-top loads it first); a new kernel that hangs before that (its own
# init, a bad device tree) would wait for a power cycle. So on a trial boot this stage arms the board's
# hardware watchdog just before booti and the kernel takes it over: on a Pi the PM watchdog (15 s, its
# most), which bcm2835_wdt finds running at probe and the kernel pings until PID 1 opens it; under qemu
# the i6300esb (mb_ewdt_s), which its driver stops at probe, after softdog is armed. Never on a slot that
# was marked good: a board whose kernel takes longer than 15 s to reach bcm2835_wdt can then only fail an
# update (the trial falls back after its tries), never reset a working slot in a loop.
setenv mb_ewdt_s 0x78
setenv mb_trial
for mb_w in ${BOOT_ORDER}; do
  if test "${mb_w}" = "trial${mb_slot}"; then setenv mb_trial 1; fi
done
setenv mb_ewdt off
if test -n "${mb_trial}"; then
  setenv mb_ewdt none
  if test "${board}" = qemu-arm; then
    # The i6300esb (8086:25ab) on bus 0 of qemu's ECAM, whose base is the first 8 bytes of its reg.
    pci enum
    fdt addr ${fdtcontroladdr}
    if fdt get addr mb_pa /pcie@10000000 reg; then
      setenv mb_ecam 0
      for mb_k in 1 2 3 4 5 6 7 8; do
        setexpr.b mb_b *${mb_pa}
        setexpr mb_ecam ${mb_ecam} * 100
        setexpr mb_ecam ${mb_ecam} + ${mb_b}
        setexpr mb_pa ${mb_pa} + 1
      done
      for mb_d in 0 1 2 3 4 5 6 7 8 9 a b c d e f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f; do
        setexpr mb_a ${mb_d} * 8000
        setexpr mb_a ${mb_a} + ${mb_ecam}
        setexpr.l mb_id *${mb_a}
        if test "${mb_id}" = 25ab8086; then
          setexpr mb_b ${mb_a} + 10
          setexpr.l mb_bar *${mb_b}
          setexpr mb_bar ${mb_bar} "&" fffffff0
          if test "${mb_bar}" != 0; then setenv mb_esb ${mb_a}; setenv mb_ewdt i6300esb; fi
        fi
      done
    fi
  else
    # The PM block (the DTB's /soc/watchdog@7e100000) where each supported Pi's ARM sees it
    # (image-build/dtb-facts.json: pm_watchdog_arm).
    for mb_f in broadcom/bcm2711-rpi-4-b.dtb broadcom/bcm2711-rpi-400.dtb broadcom/bcm2711-rpi-cm4-io.dtb; do
      if test "${fdtfile}" = "${mb_f}"; then setenv mb_pm fe100000; setenv mb_ewdt bcm2835-pm; fi
    done
    for mb_f in broadcom/bcm2837-rpi-3-b.dtb broadcom/bcm2837-rpi-3-b-plus.dtb broadcom/bcm2837-rpi-zero-2-w.dtb; do
      if test "${fdtfile}" = "${mb_f}"; then setenv mb_pm 3f100000; setenv mb_ewdt bcm2835-pm; fi
    done
  fi
fi
if test "${board}" = qemu-arm; then
  setenv mb_console "console=ttyAMA0"
else
  setenv mb_console "console=ttyS1,115200 console=tty1"
fi
# Extra words for the kernel from an optional cmdline-extra.env on this partition, one line
# "mb_extra=WORDS" (the boot test's debug shell; a card without it boots as built).
setenv mb_extra
setexpr mb_xaddr ${kernel_addr_r} + 0x3000
if test -e ${mb_dev}:${mb_fat} cmdline-extra.env; then
  if load ${mb_dev}:${mb_fat} ${mb_xaddr} cmdline-extra.env 0x200; then
    env import -t ${mb_xaddr} ${filesize} mb_extra
  fi
fi
# A slot whose kernel cannot reach its root or its init must come back here to spend a try: Debian's kernel
# never reboots after a panic (CONFIG_PANIC_TIMEOUT=0) and a bare rootwait waits for ever, and no hardware
# watchdog runs before systemd opens it. So: give up on the root after 60 s (a panic), reboot 10 s after a
# panic, and arm the kernel's softdog when the initramfs loads it (its timer starts at load; the kernel never
# pings it): a hang between then and mynabox-softdog-handover.service (which disarms it once PID 1 holds the
# hardware watchdog) resets the box 120 s after the load. Measured under qemu TCG: load to disarm (README).
# No softlockup_panic/nmi_watchdog=panic: the emulated box once stalled 21 s (an RCU stall warning, host
# starved), past the soft-lockup detector's 20 s; a panic then would spend a working slot's try (README).
setenv bootargs "${mb_console} root=PARTUUID=${mb_partuuid} ro rootwait=60 mynabox.earlywdt=${mb_ewdt} softdog.soft_active_on_boot=1 softdog.soft_margin=120 panic=10 rauc.slot=${mb_slot} mynabox.bootstate=${mb_state} ${mb_extra}"

# The chosen slot's own kernel, initramfs and, where the board names one, device tree; qemu's own device
# tree otherwise. /boot/vmlinuz and /boot/initrd.img are Debian's symbolic links (kernel-img.conf
# link_in_boot = yes: kept by the kernel package itself); Debian's arm64 vmlinuz is an uncompressed Image.
# booti moves an arm64 Image to the next 2 MiB boundary and gives it the header's image_size (Debian's 6.12:
# 0x2510000 with its bss); from a Pi's kernel_addr_r (0x80000) that covers the board's fdt_addr_r
# (0x2600000) and ramdisk_addr_r (0x2700000), and booti refuses ("RD image overlaps OS image") after its
# move has overwritten both. So the device tree and the initramfs go above where the kernel will end.
# Then a Pi's firmware values: it writes /system/linux,revision and linux,serial into the device tree it
# hands U-Boot (${fdtcontroladdr}); the slot's upstream DTB has neither and U-Boot's rpi board code copies
# only other properties (update_fdt_from_fw), so without them gpiozero finds no board and the pins fail.
# Copied byte for byte (`fdt get value` swaps the bytes of an 8-byte value); a property the firmware did
# not write is skipped and nothing here stops the boot. (No apostrophe inside a quoted word below: this
# hush then rejects the whole script.)
if load ${mb_dev}:${mb_part} ${kernel_addr_r} /boot/vmlinuz; then
  setenv mb_isize ${filesize}
  setexpr mb_hdr ${kernel_addr_r} + 0x38
  setexpr.l mb_magic *${mb_hdr}
  if test "${mb_magic}" = 644d5241; then
    setexpr mb_hdr ${kernel_addr_r} + 0x10
    setexpr.l mb_isize *${mb_hdr}
  fi
  setexpr mb_end ${kernel_addr_r} + 0x1fffff
  setexpr mb_end ${mb_end} / 0x200000
  setexpr mb_end ${mb_end} * 0x200000
  setexpr mb_end ${mb_end} + ${mb_isize}
  setexpr mb_fdt_addr ${mb_end} + 0x3fffff
  setexpr mb_fdt_addr ${mb_fdt_addr} / 0x200000
  setexpr mb_fdt_addr ${mb_fdt_addr} * 0x200000
  setexpr mb_rd_addr ${mb_fdt_addr} + 0x200000
  setenv mb_fdt_addr 0x${mb_fdt_addr}
  setenv mb_rd_addr 0x${mb_rd_addr}
  if load ${mb_dev}:${mb_part} ${mb_rd_addr} /boot/initrd.img; then
    setenv mb_initrd ${mb_rd_addr}:${filesize}
    setenv mb_fdt ${fdtcontroladdr}
    if test -n "${fdtfile}"; then
      if load ${mb_dev}:${mb_part} ${mb_fdt_addr} /boot/dtbs/${fdtfile}; then
        setenv mb_fdt ${mb_fdt_addr}
        setenv mb_copied
        fdt addr ${mb_fdt}
        fdt resize 0x400
        for mb_prop in linux,revision linux,serial; do
          fdt addr ${fdtcontroladdr}
          setenv mb_len 0
          setenv mb_bytes
          if fdt get size mb_len /system ${mb_prop}; then
            if fdt get addr mb_pa /system ${mb_prop}; then
              if test ${mb_len} -le 16; then
                for mb_k in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
                  if test ${mb_k} -le ${mb_len}; then
                    setexpr.b mb_b *${mb_pa}
                    setenv mb_bytes "${mb_bytes} ${mb_b}"
                    setexpr mb_pa ${mb_pa} + 1
                  fi
                done
              fi
            fi
          fi
          fdt addr ${mb_fdt}
          if test -n "${mb_bytes}"; then
            if fdt get size mb_n /system; then true; else fdt mknode / system; fi
            if fdt set /system ${mb_prop} "[${mb_bytes} ]"; then setenv mb_copied "${mb_copied} ${mb_prop}"; fi
          fi
        done
        setenv mb_rev none
        fdt get value mb_rev /system linux,revision
        echo "mynabox: device tree ${fdtfile}: copied from the firmware:${mb_copied}; /system/linux,revision ${mb_rev}"
      fi
    fi
    echo "mynabox: slot ${mb_slot}: kernel, initramfs ${mb_initrd}, device tree ${mb_fdt}; ${bootargs}"
    # The early watchdog (above), armed last: loading the slot's files is not part of its time.
    if test "${mb_ewdt}" = i6300esb; then
      # Config: 1 kHz clock, no interrupt, reboot on timeout; both stages' preload (s << 9 each, as its
      # Linux driver sets them: about s seconds in all), each write after the unlock pair; reload; enable
      # (not locked, so the driver can stop it).
      setexpr mb_a ${mb_esb} + 60
      mw.w ${mb_a} 3
      setexpr mb_v ${mb_ewdt_s} * 200
      setexpr mb_r ${mb_bar} + c
      mw.w ${mb_r} 80
      mw.w ${mb_r} 86
      mw.l ${mb_bar} ${mb_v}
      setexpr mb_a ${mb_bar} + 4
      mw.w ${mb_r} 80
      mw.w ${mb_r} 86
      mw.l ${mb_a} ${mb_v}
      mw.w ${mb_r} 80
      mw.w ${mb_r} 86
      mw.w ${mb_r} 100
      setexpr mb_a ${mb_esb} + 68
      mw.b ${mb_a} 2
      echo "mynabox: slot ${mb_slot}: on trial: early watchdog i6300esb armed (${mb_ewdt_s} s)"
    elif test "${mb_ewdt}" = bcm2835-pm; then
      # As bcm2835_wdt starts it: PM_WDOG = password | ticks (1/65536 s; 15 s), then PM_RSTC = password |
      # its other bits | WRCFG full reset.
      setexpr mb_a ${mb_pm} + 24
      mw.l ${mb_a} 5a0f0000
      setexpr mb_a ${mb_pm} + 1c
      setexpr.l mb_v *${mb_a}
      setexpr mb_v ${mb_v} "&" ffffcf
      setexpr mb_v ${mb_v} "|" 5a000020
      mw.l ${mb_a} ${mb_v}
      echo "mynabox: slot ${mb_slot}: on trial: early watchdog bcm2835-pm armed (15 s)"
    elif test "${mb_ewdt}" = none; then
      echo "mynabox: slot ${mb_slot}: on trial: no early watchdog on this board"
    fi
    booti ${kernel_addr_r} ${mb_initrd} ${mb_fdt}
  else
    echo "mynabox: slot ${mb_slot}: cannot load /boot/initrd.img"
  fi
else
  echo "mynabox: slot ${mb_slot}: cannot load /boot/vmlinuz"
fi
