#!/bin/sh
# Runs inside the image's arm64 root (chroot, under qemu-user): the firmware's dependencies into
# /opt/mynabox/venv, every file checked against the lock's hashes, byte code compiled. The build caches the
# result (keyed by the base and this lock), so a firmware-only rebuild skips it: minutes under emulation.
set -eu
in=/mynabox-in
venv=/opt/mynabox/venv
# pip runs from Debian's pip wheel (python3-venv brings it) instead of being installed into the venv and
# uninstalled again: no pip is left behind, and the two steps cost over a minute under emulation.
python3 -m venv --without-pip "$venv"
pip_whl=$(ls /usr/share/python-wheels/pip-*.whl)
"$venv/bin/python" "$pip_whl/pip" install -q --no-index --find-links "$in" --require-hashes --no-compile \
  --disable-pip-version-check -r "$in/deps.lock"
# Byte-code without timestamps (reproducible; the read-only root never changes under it). -f: pip's own run
# already imported setuptools' _distutils_hack (its .pth) and left a timestamp pyc that compileall would keep.
"$venv/bin/python" -m compileall -q -f -j 0 --invalidation-mode unchecked-hash "$venv/lib"
