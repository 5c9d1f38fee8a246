#!/bin/sh
# Runs inside the arm64 build chroot (mmdebstrap customize hook): resolves the firmware's dependencies for
# the target's Python natively, writes the hashed lock if none is given, and builds or fetches every wheel
# against that lock (pyscard and lgpio have no aarch64 wheel for CPython 3.13, so they are built here from
# their sdists).
set -eu
in=/mynabox-in
out=/mynabox-out
unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_EXTRA_INDEX_URL PIP_INDEX_URL || true
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONFIG_FILE=/dev/null
# lgpio's setup.py links the lg library's own C sources into its module when PYPI=1 (as its PyPI wheels are
# built); otherwise it links a system liblgpio, which Debian does not package.
export PYPI=1
if [ -s "$in/ca.crt" ]; then
  # pip's truststore reads OpenSSL's default locations, which SSL_CERT_FILE overrides; --cert alone did not
  # make the inspecting proxy's CA trusted here.
  export PIP_CERT="$in/ca.crt" SSL_CERT_FILE="$in/ca.crt" REQUESTS_CA_BUNDLE="$in/ca.crt"
else
  unset PIP_CERT || true
fi
python3 -m venv /opt/build-venv
pip=/opt/build-venv/bin/pip
mkdir -p "$out/wheels"
firmware=$(ls "$in"/mynabox-*.whl)
if [ ! -s "$in/requirements.lock" ]; then
  "$pip" install -q --dry-run --ignore-installed --report "$out/report.json" "$firmware"
  python3 "$in/lock-from-report.py" "$out/report.json" > "$out/requirements.lock"
else
  cp "$in/requirements.lock" "$out/requirements.lock"
fi
"$pip" wheel -q --require-hashes --no-deps -r "$out/requirements.lock" -w "$out/wheels"
