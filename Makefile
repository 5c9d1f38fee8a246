# mynabox: `make demo` runs the box on the virtual card; `make test` runs every check.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps lint test test-fast demo bench bench-fleet hil gpio-vm fuzz screens clean image image-test image-hil image-update-test image-stream-test image-damage-test image-cut-test image-reproducible bundle

deps:
	@scripts/install-deps.sh

lint: deps
	$(VENV)/bin/ruff check firmware testkit tests
	$(VENV)/bin/ruff format --check firmware testkit tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The whole suite: quality gates, unit tests and the integration tests on the real stack.
test: lint
	$(PY) -m pytest -q

test-fast: deps
	$(PY) -m pytest -q -m "not stack and not slow"

demo: deps
	$(PY) -m mynabox.cli demo

# Benchmarks print figures (last line JSON each); they are not tests and assert nothing about speed.
bench: deps
	$(PY) tests/bench/bench_card.py
	$(PY) tests/bench/bench_seal.py
	$(PY) tests/bench/bench_receive.py
	$(PY) tests/bench/bench_lookup.py
	$(PY) tests/bench/bench_publish.py
	$(PY) tests/bench/bench_mqtt_link.py
	$(PY) tests/bench/bench_delivery.py
	$(PY) tests/bench/bench_imports.py
	$(PY) tests/bench/bench_daemon.py
	$(PY) tests/bench/bench_fleet.py

# 200 simulated vehicles → 4 gateway brokers → a 3-node NATS cluster → the central consumer (≈ 2 min).
bench-fleet: deps
	$(PY) tests/bench/bench_fleet.py

# The bench's hardware-in-loop suite on the box under test (hw/bench/README.md); reports in reports/hil/<run>/.
RIG ?= hw/bench/rig.toml
hil: deps
	$(PY) scripts/hil.py --rig $(RIG)

# The panel on a real kernel GPIO chip: gpio-sim (built out of tree) in Debian's amd64 kernel under qemu
# (TCG); downloads the kernel image and source once (~210 MB), then ~1 min. tests/hw/gpiosim_vm.sh.
gpio-vm: deps
	MYNABOX_GPIOSIM_VM=1 $(PY) -m pytest -q -s tests/hw/test_gpiosim_vm.py

# Coverage-guided fuzzing (atheris, x86_64) of every parser of outside bytes: FUZZ_SECONDS per target
# (default 60), FUZZ_TARGETS to pick some; prints executions/s, coverage and crashes per target.
fuzz: deps
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} $(PY) tests/fuzz/harness.py $(FUZZ_TARGETS)

# The SD image (as root; 25+ min under qemu-user on 2 cores, so not part of `make test`): image-build/README.md.
image:
	image-build/build

image-reproducible:
	image-build/check-reproducible

# Boots the built image under qemu-system-aarch64 -M virt (TCG) through U-Boot and runs the boot checks.
image-test: deps
	$(PY) image-build/boot-test.py

# The bench suite (make hil) run ON the emulated box, the host as the technician (image-build/hil-test.py).
image-hil: deps
	$(PY) image-build/hil-test.py

# A field update of the emulated box: bundles from the build's root, installed, switched, rolled back.
image-update-test: deps
	$(PY) image-build/update-test.py

# Bytes over the link for a firmware-only change: an adaptive bundle streamed by the box's RAUC (≈ 10–15 min).
image-stream-test: deps
	$(PY) image-build/stream-test.py

# The emulated box powered on with its boot-state copies damaged (truncated, zeroed, both): boots, reports.
image-damage-test: deps
	$(PY) image-build/damage-test.py

# Power cuts (qemu killed) at random points of an update (install, the switch's state write, the new slot's
# first boot), each followed by a power-on that must come up working: make image-cut-test CUTS=30
CUTS ?= 30
image-cut-test: deps
	$(PY) image-build/cut-test.py --cuts $(CUTS)

# A signed verity bundle of one root slot: make bundle ROOTFS=root-a.ext4 CERT=… KEY=… [KEYRING=ca.pem]
# (CERT/KEY: files or PKCS#11 URIs; never in this repository). Output: image-build/out/mynabox-<version>.raucb
bundle:
	image-build/make-bundle --rootfs "$(ROOTFS)" --cert "$(CERT)" --key "$(KEY)" \
	  $(if $(KEYRING),--keyring "$(KEYRING)") \
	  --out image-build/out/mynabox-$$(sed -n 's/^__version__ = "\(.*\)"$$/\1/p' firmware/mynabox/__init__.py).raucb

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
