#!/bin/sh
# Runs inside the image's arm64 root (chroot, under qemu-user): the firmware layer on the Debian base.
set -eu
in=/mynabox-in
venv=/opt/mynabox/venv

# systemd files from the repo's systemd/ (the tmpfiles file is overridden by the image's /etc/tmpfiles.d).
install -m 0644 "$in"/systemd/*.service /usr/lib/systemd/system/
install -D -m 0644 "$in/systemd/mynabox.sysusers" /usr/lib/sysusers.d/mynabox.conf
install -D -m 0644 "$in/systemd/mynabox.tmpfiles" /usr/lib/tmpfiles.d/mynabox.conf
install -D -m 0644 "$in/systemd/udev/60-mynabox.rules" /usr/lib/udev/rules.d/60-mynabox.rules
install -D -m 0644 "$in/systemd/polkit/50-mynabox-pcscd.rules" \
  /usr/share/polkit-1/rules.d/50-mynabox-pcscd.rules
# The daemon switches to an installed update with `systemctl reboot` (user mynabox, only when idle).
install -D -m 0644 "$in/systemd/polkit/50-mynabox-reboot.rules" \
  /usr/share/polkit-1/rules.d/50-mynabox-reboot.rules
# Users now: the root is read-only at run time.
systemd-sysusers
# The FAT partition: root's, readable by the daemon's group only (it reads the boot state to know when an
# installed update waits for its switch); nobody else. Its gid exists only now, after sysusers.
gid=$(getent group mynabox | cut -d: -f3)
[ -n "$gid" ] || { echo "customize: no group mynabox" >&2; exit 1; }
sed -i "s|^\(LABEL=MYNA-BOOT .*\)umask=0077|\1uid=0,gid=$gid,fmask=0137,dmask=0027|" /etc/fstab
grep -q "gid=$gid,fmask=0137,dmask=0027" /etc/fstab || { echo "customize: the FAT's fstab line" >&2; exit 1; }

# The firmware on the dependencies' venv (lib/venv-deps.sh, or its cached copy): its wheel checked against
# the lock's hash, pip run from Debian's pip wheel so none is left in the venv, byte code without timestamps.
pip_whl=$(ls /usr/share/python-wheels/pip-*.whl)
"$venv/bin/python" "$pip_whl/pip" install -q --no-index --find-links "$in" --require-hashes --no-compile \
  --no-deps --disable-pip-version-check -r "$in/firmware.lock"
"$venv/bin/python" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$venv"/lib/python3*/site-packages/mynabox

# The identity lives on the state partition (mynabox-firstboot.service puts it there).
mkdir -p /etc/mynabox /var/lib/mynabox /boot/firmware
chmod 0755 /etc/mynabox
rm -rf /etc/mynabox/credentials
ln -sfn /var/lib/mynabox/identity/credentials /etc/mynabox/credentials

systemctl enable mynabox.service mynabox-firstboot.service mynabox-health.service \
  mynabox-softdog-handover.service systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
ln -sfn ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
echo mynabox > /etc/hostname

# No password login anywhere: root's password locked, no getty. SSH only on bench images (key login only;
# their host keys are the image's, the same on every bench box).
if [ -f /etc/shadow ]; then
  sed -i 's/^root:[^:]*:/root:!*:/' /etc/shadow
fi
if [ "${BENCH_SSH:-0}" = 1 ]; then
  systemctl enable ssh.service
  printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n' > /etc/ssh/sshd_config.d/50-mynabox.conf
else
  systemctl mask getty@.service serial-getty@.service
fi
# A transient machine id on the read-only root; D-Bus's copy is the link its tmpfiles.d line would make at
# boot (on the read-only root that line failed: the boot test looks for any such write).
: > /etc/machine-id
mkdir -p /var/lib/dbus
ln -sfn /etc/machine-id /var/lib/dbus/machine-id
