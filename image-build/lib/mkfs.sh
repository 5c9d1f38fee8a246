#!/bin/sh
# Makes the card's three file system images from three trees, reproducibly: every time is
# SOURCE_DATE_EPOCH, UUIDs / hash seeds / the FAT volume id are fixed, and nothing reads the clock.
#   mkfs.sh ROOT_TREE BOOT_TREE STATE_TREE OUT_DIR ROOT_SIZE BOOT_SIZE STATE_SIZE
set -eu
root=$1 boot=$2 state=$3 out=$4 root_size=$5 boot_size=$6 state_size=$7
: "${SOURCE_DATE_EPOCH:?}"
export E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" E2FSCK_TIME="$SOURCE_DATE_EPOCH"
for tree in "$root" "$boot" "$state"; do
  find "$tree" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
done
mkext4() {  # label uuid-suffix tree image size
  rm -f "$4"
  mke2fs -q -t ext4 -b 4096 -I 256 -L "$1" -U "6d796e61-626f-4178-8000-00000000000$2" \
    -E "hash_seed=6d796e61-626f-4178-8000-0000000000a$2,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0" \
    -d "$3" "$4" "$5"
  # mke2fs -d copies each inode's ctime, which no one can set on the host: reset them all. The "@" matters:
  # debugfs tries date formats on a bare number before seconds (1796213000 became a time in 2340).
  (cd "$3" && find . -printf '%P\n') | sed "s|.*|sif \"/&\" ctime @$SOURCE_DATE_EPOCH|" > "$4.debugfs"
  debugfs -w -f "$4.debugfs" "$4" >/dev/null 2>"$4.debugfs.err" || { cat "$4.debugfs.err" >&2; exit 1; }
  rm -f "$4.debugfs" "$4.debugfs.err"
  e2fsck -fp "$4" >"$4.fsck" 2>&1 || { echo "mkfs.sh: e2fsck found errors in $4:" >&2; head -n 20 "$4.fsck" >&2; exit 1; }
  rm -f "$4.fsck"
}
mkext4 mynabox-root-a 1 "$root" "$out/root-a.ext4" "$root_size"
mkext4 mynabox-state 4 "$state" "$out/state.ext4" "$state_size"
rm -f "$out/boot.vfat"
truncate -s "$boot_size" "$out/boot.vfat"
mkfs.vfat -F 32 -n MYNA-BOOT -i 4d594e41 --invariant "$out/boot.vfat" >/dev/null
if [ -n "$(ls -A "$boot")" ]; then
  MTOOLS_SKIP_CHECK=1 mcopy -spmQ -i "$out/boot.vfat" "$boot"/* ::
fi
