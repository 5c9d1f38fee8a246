"""The panel on a real kernel GPIO chip (gpio-sim in Debian's kernel, in qemu): `make gpio-vm`.

Skipped in the default run: it downloads Debian's kernel image and source once (~210 MB) and boots a VM
(~1 min under TCG). `tests/hw/gpiosim_vm.sh` says what it does.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("gpiosim_vm.sh")


@pytest.mark.skipif(os.environ.get("MYNABOX_GPIOSIM_VM") != "1", reason="`make gpio-vm` runs it (a VM)")
def test_the_panel_drives_and_reads_a_kernel_gpiochip_through_lgpio() -> None:
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ALL-OK" in done.stdout and "FAIL" not in done.stdout
