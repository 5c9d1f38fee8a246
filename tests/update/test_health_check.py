"""`mynabox update health` (mynabox-health.service) against Debian's RAUC as a service on a private bus with
our bootloader backend: slot B was just booted by U-Boot (one of its tries spent). Healthy: RAUC marks it good
(tries back). Never READY: marked bad, back to A at once. READY but its self-test failing: marked bad, the
daemon's idle switch takes the box back. The reboot command records its call; READY and the self-test are
given as commands (the service's are `systemctl is-active mynabox` and `mynabox selftest`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mynabox
from mynabox.adapters import updatefiles
from mynabox.adapters.bootfiles import BootFiles
from mynabox.update import bootstate as bs
from mynabox.update import lastresult

from .conftest import REPO, RaucBox, Signer, rauc_service, rauc_service_missing

pytestmark = pytest.mark.skipif(rauc_service_missing() is not None, reason=str(rauc_service_missing()))
SELFTEST_OK = "".join(f"ok   {n}\n" for n in ("config: x", "reader", "display", "panel", "outbox", "disk"))
SELFTEST_OK += "FAIL broker: refused\n"
JUST_BOOTED_B = replace(bs.INITIAL, order=("B", "A"), a_left=3, b_left=2, seq=7)


@pytest.fixture
def box(tmp_path: Path, signer: Signer) -> Iterator[RaucBox]:
    with rauc_service(tmp_path, signer.ca, booted="B") as box:
        files = BootFiles(box.boot)
        files.write(1, replace(JUST_BOOTED_B, seq=6))
        files.write(0, JUST_BOOTED_B)
        yield box


def health(
    box: RaucBox,
    tmp_path: Path,
    *,
    ready: bool | str,
    selftest: str,
    unit: str = "false",
    limit_s: float = 3,
) -> subprocess.CompletedProcess[str]:
    """The health command as the unit runs it; `ready` and `unit` are commands when strings."""
    (tmp_path / "selftest.txt").write_text(selftest)
    (tmp_path / "reboot").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/reboots\n')
    (tmp_path / "reboot").chmod(0o755)
    state = tmp_path / "state"
    installed = lastresult.Result(lastresult.INSTALLED, mynabox.__version__, datetime.now(UTC), "installed")
    updatefiles.write(state, installed)
    return subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "update", "health", "--limit-s", str(limit_s),
         "--interval", "0.5",
         "--ready-command", ready if isinstance(ready, str) else "true" if ready else "false",
         "--state-command", unit,
         "--selftest-command", f"cat {tmp_path}/selftest.txt", "--state-dir", str(state),
         "--boot-dir", str(box.boot), "--cmdline", str(box.conf.parent / "cmdline"),
         "--reboot-command", f"{tmp_path}/reboot now"],
        env=box.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_healthy_slot_is_marked_good_through_rauc(box: RaucBox, tmp_path: Path) -> None:
    done = health(box, tmp_path, ready=True, selftest=SELFTEST_OK)
    assert done.returncode == 0, done.stderr
    assert "slot B is healthy: marked good" in done.stdout
    assert BootFiles(box.boot).read().state.order == ("B", "A")
    assert BootFiles(box.boot).read().state.b_left == bs.TRIES  # U-Boot's tries back
    assert "set-state B good" in box.calls.read_text()
    kept = updatefiles.read(tmp_path / "state")
    assert kept is not None and kept.result == lastresult.GOOD
    assert not (tmp_path / "reboots").exists()


def test_a_daemon_never_ready_goes_back_to_the_previous_slot_at_once(box: RaucBox, tmp_path: Path) -> None:
    done = health(box, tmp_path, ready=False, selftest=SELFTEST_OK)
    assert done.returncode == 1
    assert "not READY, self-test not passed after 3 s" in done.stderr
    state = BootFiles(box.boot).read().state
    assert (state.order, state.b_left) == (("A",), 0)
    assert bs.get_primary(state) == "A"
    assert "set-state B bad" in box.calls.read_text()
    assert (tmp_path / "reboots").read_text() == "now\n"
    kept = updatefiles.read(tmp_path / "state")
    assert kept is not None and kept.result == lastresult.ROLLED_BACK


def test_a_failing_self_test_goes_back_when_idle(box: RaucBox, tmp_path: Path) -> None:
    done = health(box, tmp_path, ready=True, selftest=SELFTEST_OK.replace("ok   reader", "FAIL reader: none"))
    assert done.returncode == 1
    assert "self-test not passed (reader: none)" in done.stderr
    assert "the daemon switches when idle" in done.stderr
    assert bs.get_primary(BootFiles(box.boot).read().state) == "A"  # the daemon's SlotWatch sees it pending
    assert not (tmp_path / "reboots").exists()


def test_root_refuses_the_daemons_config_but_marks_good_with_the_self_test_run_as_its_owner(
    box: RaucBox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # mynabox-health.service as it was: root on a config the daemon's user owns (and could rewrite):
    # refused, nothing marked. As it is now: root with the unit's own arguments, the self-test run as the
    # config's owner (systemd-run User=mynabox on the box, setpriv here), which alone can read it.
    owner = Path(tempfile.mkdtemp(prefix="mynabox-daemon-"))  # pytest's tmp_path is root's alone
    request.addfinalizer(lambda: shutil.rmtree(owner))
    config = owner / "config.toml"
    config.write_text((REPO / "firmware/mynabox/data/config.example.toml").read_text())
    config.chmod(0o600)
    (owner / "selftest.txt").write_text(SELFTEST_OK)
    for path in (owner, config, owner / "selftest.txt"):
        os.chown(path, 65534, 65534)
    common = ["--limit-s", "3", "--interval", "0.5", "--ready-command", "true",
              "--boot-dir", str(box.boot), "--cmdline", str(box.conf.parent / "cmdline"),
              "--state-dir", str(tmp_path / "state"), "--reboot-command", "/bin/false"]  # fmt: skip
    cli = [sys.executable, "-m", "mynabox.cli", "update", "health"]
    before = subprocess.run(
        [*cli, "--config", str(config), *common],
        env=box.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert before.returncode == 2
    assert "owned by uid 65534, who could replace it" in before.stderr
    assert "set-state" not in (box.calls.read_text() if box.calls.exists() else "")
    as_owner = f"setpriv --reuid=65534 --regid=65534 --clear-groups cat {owner}/selftest.txt"
    after = subprocess.run(
        [*cli, *common, "--selftest-command", as_owner],
        env=box.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert after.returncode == 0, after.stderr
    assert "slot B is healthy: marked good" in after.stdout
    assert "set-state B good" in box.calls.read_text()
    assert BootFiles(box.boot).read().state.b_left == bs.TRIES


def show(active: str, sub: str, result: str, restarts: str, status: int) -> str:
    """`systemctl show -p …` as systemd answers for mynabox.service (restarts: a number or a shell $var)."""
    return (
        f"ActiveState={active}\\nSubState={sub}\\nResult={result}\\nNRestarts={restarts}\\n"
        f"ExecMainStatus={status}\\nActiveEnterTimestampMonotonic=0\\n"
    )


def counting(tmp_path: Path, name: str, body: str) -> str:
    """A command counting its calls ($n, from 1) before running `body`: a daemon's progress between looks."""
    script, count = tmp_path / name, tmp_path / f"{name}.n"
    script.write_text(
        f"#!/bin/sh\nn=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}\n{body}\n"
    )
    script.chmod(0o755)
    return str(script)


# The fail-fast cases wait for 10 min at most: a check that waited its limit would time out the run (60 s).
LONG_LIMIT_S = 600


def test_a_daemon_refusing_its_config_goes_back_at_once_not_at_the_limit(
    box: RaucBox, tmp_path: Path
) -> None:
    # mynabox.service does not restart on 78 (RestartPreventExitStatus): it sits failed, and before this the
    # check waited the whole limit (5 min on the box) for a READY that could not come.
    unit = counting(tmp_path, "show", f'printf "{show("failed", "failed", "exit-code", "0", 78)}"')
    done = health(box, tmp_path, ready=False, selftest=SELFTEST_OK, unit=unit, limit_s=LONG_LIMIT_S)
    assert done.returncode == 1
    assert "the daemon failed (exit 78: its config or a key refused) and is not restarted" in done.stderr
    assert "rebooting into slot A now" in done.stderr
    assert bs.get_primary(BootFiles(box.boot).read().state) == "A"
    assert "set-state B bad" in box.calls.read_text()
    assert (tmp_path / "reboots").read_text() == "now\n"
    kept = updatefiles.read(tmp_path / "state")
    assert kept is not None and kept.result == lastresult.ROLLED_BACK and "exit 78" in kept.detail


def test_a_daemon_crashing_at_start_goes_back_after_three_restarts(box: RaucBox, tmp_path: Path) -> None:
    # Restart=always, no start limit: a firmware whose daemon crashes at once restarts forever.
    unit = counting(tmp_path, "show", f'printf "{show("activating", "auto-restart", "exit-code", "$n", 1)}"')
    done = health(box, tmp_path, ready=False, selftest=SELFTEST_OK, unit=unit, limit_s=LONG_LIMIT_S)
    assert done.returncode == 1
    assert "the daemon restarted 3 times without becoming active (exit 1)" in done.stderr
    assert (tmp_path / "show.n").read_text().strip() == "3"  # at the third restart, not later
    assert bs.get_primary(BootFiles(box.boot).read().state) == "A"
    assert (tmp_path / "reboots").read_text() == "now\n"


def test_a_slow_daemon_gets_its_time_and_is_marked_good(box: RaucBox, tmp_path: Path) -> None:
    unit = counting(tmp_path, "show", f'printf "{show("activating", "start", "success", "0", 0)}"')
    ready = counting(tmp_path, "ready", 'test "$n" -ge 4')  # READY at the fourth look
    done = health(box, tmp_path, ready=ready, selftest=SELFTEST_OK, unit=unit, limit_s=60)
    assert done.returncode == 0, done.stderr
    assert "slot B is healthy: marked good" in done.stdout
    assert int((tmp_path / "show.n").read_text()) == 3  # asked before READY only
    assert not (tmp_path / "reboots").exists()


def test_an_unreadable_unit_is_said_once_and_the_limit_still_holds(box: RaucBox, tmp_path: Path) -> None:
    unit = counting(tmp_path, "show", "echo 'Failed to connect to bus: Host is down' >&2; exit 1")
    done = health(box, tmp_path, ready=False, selftest=SELFTEST_OK, unit=unit, limit_s=3)
    assert done.returncode == 1
    said = (
        "the daemon's unit cannot be read (exit 1: Failed to connect to bus: Host is down): waiting the limit"
    )
    assert done.stderr.count(said) == 1
    assert int((tmp_path / "show.n").read_text()) > 2  # asked at every look
    assert "not READY, self-test not passed after 3 s" in done.stderr
    assert (tmp_path / "reboots").read_text() == "now\n"


def states(tmp_path: Path, *looks: str) -> str:
    """`systemctl show` answering look by look as systemd would (the last one from then on)."""
    cases = "".join(f'    {i}) printf "{look}" ;;\n' for i, look in enumerate(looks[:-1], start=1))
    return counting(tmp_path, "show", f'case $n in\n{cases}    *) printf "{looks[-1]}" ;;\nesac')


def test_a_daemon_hung_before_ready_goes_back_at_its_third_start_timeout(
    box: RaucBox, tmp_path: Path
) -> None:
    # `ExecStart=/bin/sleep infinity` (the update test's bad bundle): every start ends at TimeoutStartSec=,
    # is counted and restarted; Result=timeout shows only for RestartSec= (a look may miss it), the next
    # start says success. The check goes back at the third restart, not at its limit.
    unit = states(
        tmp_path,
        show("activating", "start", "success", "0", 0),
        show("activating", "auto-restart", "timeout", "0", 15),
        show("activating", "start", "success", "1", 0),
        show("activating", "start", "success", "2", 0),  # the second timeout: not seen
        show("activating", "start", "success", "2", 0),
        show("activating", "start", "success", "3", 0),
    )
    done = health(box, tmp_path, ready=False, selftest=SELFTEST_OK, unit=unit, limit_s=LONG_LIMIT_S)
    assert done.returncode == 1
    assert "the daemon restarted 3 times without becoming active (now starting again)" in done.stderr
    assert (tmp_path / "show.n").read_text().strip() == "6"
    assert bs.get_primary(BootFiles(box.boot).read().state) == "A"
    assert (tmp_path / "reboots").read_text() == "now\n"


def test_a_first_start_timing_out_once_is_restarted_and_marked_good(box: RaucBox, tmp_path: Path) -> None:
    # A slow first start after an update (a cold card, say) times out once; the next start gets READY.
    unit = states(
        tmp_path,
        show("activating", "start", "success", "0", 0),
        show("activating", "auto-restart", "timeout", "0", 15),
        show("activating", "start", "success", "1", 0),
    )
    ready = counting(tmp_path, "ready", 'test "$n" -ge 4')
    done = health(box, tmp_path, ready=ready, selftest=SELFTEST_OK, unit=unit, limit_s=60)
    assert done.returncode == 0, done.stderr
    assert "slot B is healthy: marked good" in done.stdout
    assert not (tmp_path / "reboots").exists()
