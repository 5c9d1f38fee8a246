# mynabox boot script (U-Boot hush; `mkimage -A arm64 -T script -C none -d boot.cmd boot.scr`).
#
# RAUC's U-Boot contract (BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT; every boot spends one try of the slot it
# boots, `rauc status mark-good` gives the tries back) on a boot state kept in TWO copies on this FAT
# partition, bootstate.0 and bootstate.1: each 512 bytes in `env export -c` form (CRC32, then name=value
# pairs) holding BOOT_SEQ, a hex sequence number. The newest copy whose CRC holds wins; the new state is
# always written into the OTHER copy, so a power cut tears at most the copy being written and the previous
# state survives in the one read. The same format and rule are in firmware/mynabox/update/bootstate.py.
# BOOT_SEQ counts modulo 2^32 and newest is serial number arithmetic: 1 to 7fffffff ahead (ffffffff + 1 = 0
# is newer than ffffffff; exactly 80000000 apart reads copy 0, as a tie does), so the state written is
# always read next, whatever number a copy was forged or worn to. setexpr computes in 64 bits (ffffffff + 1
# was 100000000, a copy neither side read as newer: every boot then spent the same try again), hence the
# masks; itest compares the low 32 bits.
# What was damaged goes on the kernel command line (mynabox.bootstate=ok|copy0-bad|copy1-bad|both-bad) so
# the box reports it after boot. Kernel, initramfs and device tree come from the chosen slot's own /boot.

setenv mb_dev "${devtype} ${devnum}"
setenv mb_size 0x200
setexpr mb_addr0 ${kernel_addr_r} + 0
setexpr mb_addr1 ${kernel_addr_r} + 0x1000

# Read both copies: a copy counts only when all 512 bytes load, its CRC holds and its BOOT_SEQ is spelt as
# the writers spell it (lowercase hex, no leading zero, at most 8 digits: setexpr of it masked to 32 bits
# gives the same text back; the leading 0 keeps a "*ADDR" from being read as a pointer).
setenv mb_ok0 0
setenv mb_ok1 0
mw.b ${mb_addr0} 0 ${mb_size}
setenv BOOT_SEQ
if load ${mb_dev}:${distro_bootpart} ${mb_addr0} bootstate.0 ${mb_size}; then
  if test "${filesize}" = "200"; then
    if env import -c ${mb_addr0} ${mb_size} BOOT_SEQ; then
      if test -n "${BOOT_SEQ}"; then
        setenv mb_canon
        setexpr mb_canon 0${BOOT_SEQ} "&" ffffffff
        if test "${mb_canon}" = "${BOOT_SEQ}"; then setenv mb_ok0 1; setenv mb_seq0 ${BOOT_SEQ}; fi
      fi
    fi
  fi
fi
mw.b ${mb_addr1} 0 ${mb_size}
setenv BOOT_SEQ
if load ${mb_dev}:${distro_bootpart} ${mb_addr1} bootstate.1 ${mb_size}; then
  if test "${filesize}" = "200"; then
    if env import -c ${mb_addr1} ${mb_size} BOOT_SEQ; then
      if test -n "${BOOT_SEQ}"; then
        setenv mb_canon
        setexpr mb_canon 0${BOOT_SEQ} "&" ffffffff
        if test "${mb_canon}" = "${BOOT_SEQ}"; then setenv mb_ok1 1; setenv mb_seq1 ${BOOT_SEQ}; fi
      fi
    fi
  fi
fi

# The newest valid copy wins: copy 1 when its number is 1 to 7fffffff ahead of copy 0's, modulo 2^32 (itest
# reads hex); its state is written to the other copy below.
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
setenv BOOT_SEQ
setenv mb_state ok
if test ${mb_ok0} = 1; then
  if test ${mb_ok1} = 1; then
    setexpr mb_ahead ${mb_seq1} - ${mb_seq0}
    setexpr mb_ahead ${mb_ahead} "&" ffffffff
    setenv mb_use 0
    if itest ${mb_ahead} -gt 0; then
      if itest ${mb_ahead} -lt 80000000; then setenv mb_use 1; fi
    fi
  else
    setenv mb_use 0
    setenv mb_state copy1-bad
  fi
elif test ${mb_ok1} = 1; then
  setenv mb_use 1
  setenv mb_state copy0-bad
else
  setenv mb_use none
  setenv mb_state both-bad
fi
if test ${mb_use} = 0; then
  env import -c ${mb_addr0} ${mb_size} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT BOOT_SEQ
  setenv mb_write 1
elif test ${mb_use} = 1; then
  env import -c ${mb_addr1} ${mb_size} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT BOOT_SEQ
  setenv mb_write 0
else
  setenv BOOT_SEQ 0
  setenv mb_write 0
fi
echo "mynabox: boot state copy ${mb_use} (${mb_state}), seq ${BOOT_SEQ}"

# RAUC's defaults for what is missing.
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

# The first slot of BOOT_ORDER with tries left spends one.
setenv mb_slot
for mb_try in ${BOOT_ORDER}; do
  if test -z "${mb_slot}"; then
    if test "${mb_try}" = A; then
      if test ${BOOT_A_LEFT} -gt 0; then
        setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
        setenv mb_slot A
        setenv mb_part 2
      fi
    elif test "${mb_try}" = B; then
      if test ${BOOT_B_LEFT} -gt 0; then
        setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
        setenv mb_slot B
        setenv mb_part 3
      fi
    fi
  fi
done

# Write the new state into the other copy before booting anything; ffffffff + 1 is 0.
setexpr BOOT_SEQ ${BOOT_SEQ} + 1
setexpr BOOT_SEQ ${BOOT_SEQ} "&" ffffffff
if test -z "${mb_slot}"; then
  echo "mynabox: no slot has tries left: every slot gets 3 again, reset"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
fi
setexpr mb_waddr ${kernel_addr_r} + 0x2000
env export -c -s ${mb_size} ${mb_waddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT BOOT_SEQ
if fatwrite ${mb_dev}:${distro_bootpart} ${mb_waddr} bootstate.${mb_write} ${mb_size}; then
  echo "mynabox: wrote bootstate.${mb_write}: order ${BOOT_ORDER}, A ${BOOT_A_LEFT}, B ${BOOT_B_LEFT}, seq ${BOOT_SEQ}"
else
  echo "mynabox: writing bootstate.${mb_write} failed"
fi
if test -z "${mb_slot}"; then
  reset
fi

echo "mynabox: booting slot ${mb_slot} from ${mb_dev}:${mb_part}"
part uuid ${mb_dev}:${mb_part} mb_partuuid
if test "${board}" = qemu-arm; then
  setenv mb_console "console=ttyAMA0"
else
  setenv mb_console "console=ttyS1,115200 console=tty1"
fi
# Extra words for the kernel from an optional cmdline-extra.env on this partition, one line
# "mb_extra=WORDS" (the boot test's debug shell; a card without it boots as built).
setenv mb_extra
if test -e ${mb_dev}:${distro_bootpart} cmdline-extra.env; then
  if load ${mb_dev}:${distro_bootpart} ${mb_waddr} cmdline-extra.env 0x200; then
    env import -t ${mb_waddr} ${filesize} mb_extra
  fi
fi
# A slot whose kernel cannot reach its root or its init must come back here to spend a try: Debian's kernel
# never reboots after a panic (CONFIG_PANIC_TIMEOUT=0) and a bare rootwait waits for ever, and no watchdog
# runs before systemd opens it. So: give up on the root after 60 s (a panic), reboot 10 s after a panic.
setenv bootargs "${mb_console} root=PARTUUID=${mb_partuuid} ro rootwait=60 panic=10 rauc.slot=${mb_slot} mynabox.bootstate=${mb_state} ${mb_extra}"

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
    booti ${kernel_addr_r} ${mb_initrd} ${mb_fdt}
  fi
fi
echo "mynabox: slot ${mb_slot} did not boot: reset (its try is spent)"
reset
