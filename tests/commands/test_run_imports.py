"""What the daemon holds in memory: `mynabox run` as a real subprocess on a real box's files, started to READY
and stopped by SIGTERM, lists the modules it loaded; none that only other commands use may be among them.

Every module stays loaded for the daemon's lifetime: argparse with gettext alone was 0.35 MB of a box's RAM
(README, "Memory"). The deny-list names what the run path must not load, so an import that drags one in fails
here rather than as a figure in `make bench` weeks later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mynabox.adapters.keyfiles import CREDENTIALS_ENV
from mynabox.cli import COMMANDS
from support.boxfiles import DAEMON_EXTRA, VALID, credentials_env, make_box, write_config
from support.notify import NotifySocket
from support.wait import wait_for

# The daemon's own command line, as the unit runs it, printing sys.modules when it exits.
DAEMON = """
import atexit, sys
atexit.register(lambda: open(sys.argv.pop(), "w").write("\\n".join(sorted(sys.modules))))
from mynabox.cli import main
sys.exit(main(sys.argv[1:-1]))
"""

DENIED_PACKAGES = ("mynabox.gateway", "mynabox.fleet", "mynabox_testkit")
DENIED = {
    # the full command line parser: the unit's command line is parsed without it
    "argparse",
    "gettext",
    # `mynabox update …` only: the daemon reads the last result and the boot slots, not rauc's status
    "mynabox.update.raucstatus",
    "mynabox.update.bundle",
    "mynabox.update.verity",
    "mynabox.update.health",
    # the other commands
    *(module for module, _ in COMMANDS.values() if module != "mynabox.commands.run"),
    # stdlib the run path has no use for (paho's urllib.request and http.client bring tempfile and email)
    "http.server",
    "asyncio",
    "unittest",
    "pdb",
}


def daemon_modules(tmp_path: Path, notify: NotifySocket) -> set[str]:
    box = make_box(tmp_path)
    config = write_config(box, VALID + DAEMON_EXTRA)
    listing = tmp_path / "modules.txt"
    env = {k: v for k, v in os.environ.items() if k not in (CREDENTIALS_ENV, "MYNABOX_CONFIG")}
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, "run", "--config", str(config), str(listing)],
        env={**env, **credentials_env(box), "NOTIFY_SOCKET": str(notify.path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = wait_for(lambda: notify.seen("READY=1") > 0 or daemon.poll() is not None, 60)
        assert ready and daemon.poll() is None, "the daemon did not get ready"
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    return set(listing.read_text().split())


def test_the_daemon_loads_nothing_only_other_commands_need(tmp_path: Path, notify: NotifySocket) -> None:
    modules = daemon_modules(tmp_path, notify)
    assert {"mynabox.wiring", "mynabox.commands.run", "mynabox.adapters.pcsc"} <= modules  # it did run
    loaded = sorted(
        m for m in modules if m in DENIED or any(m == p or m.startswith(p + ".") for p in DENIED_PACKAGES)
    )
    assert loaded == []
