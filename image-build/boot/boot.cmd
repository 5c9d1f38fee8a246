# mynabox boot script, the FAT stub (U-Boot hush; `mkimage -A arm64 -T script -C none -d boot.cmd boot.scr`,
# image-build/boot/install-boot-files).
#
# Two stages. This one, boot.scr on the FAT partition p1, is NEVER updated by a bundle: RAUC writes only the
# root slots (p2, p3), so what is here stays as the card was flashed for the life of the card. It does only
# what cannot live in a slot: choosing the slot. The rest (kernel command line, kernel, initramfs, device
# tree and its Pi fix-ups, booti) is the second stage, /boot/mynabox-boot.scr in the chosen slot's own root
# (image-build/boot/mynabox-boot.cmd), which a bundle brings with its slot, so a fix to it reaches the field.
#
# The contract between the two, kept by every future second stage (old stubs stay in the field): the stub
# sets mb_stub (1: this stub), mb_dev ("devtype devnum"), mb_fat (the FAT partition), mb_slot (A or B),
# mb_part (2 or 3), mb_state (ok|copy0-bad|copy1-bad|both-bad), loads the slot's /boot/mynabox-boot.scr (a
# mkimage legacy script image, at most 64 KiB) at ${kernel_addr_r} + 0x10000 and sources it. The second
# stage sets mb_stage first thing and ends in booti; if it returns, or cannot be loaded, or `source` refuses
# it (the legacy header's CRCs catch a torn or corrupt file), the stub says so and resets: the slot's try is
# already spent, so a slot with a broken second stage falls back after its tries like a slot whose kernel
# does not boot.
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
# What was damaged goes to the second stage as mb_state, which puts it on the kernel command line
# (mynabox.bootstate=...) so the box reports it after boot.

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

# The second stage, from the chosen slot itself (see the top). Its own lines start "mynabox: slot X: ".
# No apostrophe inside a quoted word in this script: this hush then rejects the whole script.
echo "mynabox: booting slot ${mb_slot} from ${mb_dev}:${mb_part}"
setenv mb_stub 1
setenv mb_fat ${distro_bootpart}
setenv mb_stage
# Its own place, zeroed first (not ${scriptaddr}, where this stub itself was loaded: a short or empty file
# there would leave this stub to be sourced again).
setexpr mb_saddr ${kernel_addr_r} + 0x10000
mw.b ${mb_saddr} 0 0x10000
if load ${mb_dev}:${mb_part} ${mb_saddr} /boot/mynabox-boot.scr 0x10000; then
  source ${mb_saddr}
  if test -n "${mb_stage}"; then
    echo "mynabox: slot ${mb_slot} did not boot: reset (its try is spent)"
  else
    echo "mynabox: slot ${mb_slot}: its boot stage /boot/mynabox-boot.scr did not run (bad image): reset (its try is spent)"
  fi
else
  echo "mynabox: slot ${mb_slot}: no boot stage /boot/mynabox-boot.scr: reset (its try is spent)"
fi
reset
