"""The bench plugin: the rig file, the technician's channel, measurements, and the reports.

`MYNABOX_RIG` names the rig file (`make hil` sets it; `scripts/hil.py` too); without it every `hil` test
is skipped with the reason, so the plain test run is unchanged. `MYNABOX_HIL_REPORTS` is the run's report
directory (report.json and report.html are rewritten after every check, so a box that resets mid-run still
leaves what it did).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import mynabox

from .bench import Bench, open_bench
from .measure import Measurement, judge
from .names import check_name
from .prompts import Operator
from .report import write_reports
from .rig import Rig, RigError, load_rig

RIG_ENV, REPORTS_ENV = "MYNABOX_RIG", "MYNABOX_HIL_REPORTS"
# On a box (`make hil` there collects tests/hil too) there is no browser: the report's browser test stays out.
_BROWSER = Path(__file__).parents[1] / "gateway" / "browser.py"
collect_ignore = [] if _BROWSER.exists() and importlib.util.find_spec("selenium") else ["test_report.py"]
NO_RIG = "no rig file given: a bench run is `make hil` (hw/bench/rig.toml) or `make hil RIG=FILE`"


class Run:
    """What the report says, filled in as the checks run."""

    def __init__(self, rig: Rig, reports: Path | None) -> None:
        self.rig = rig
        self.reports = reports
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.bench: Bench | None = None
        self.bench_error: str | None = None
        self.tests: dict[str, dict[str, Any]] = {}
        self.measurements: list[Measurement] = []
        self.facts: dict[str, dict[str, Any]] = {}
        self.exitstatus: int | None = None  # pytest's, once the session ended (2: interrupted)

    def data(self, finished: bool) -> dict[str, Any]:
        bench = self.bench
        tests = list(self.tests.values())
        counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "skipped")}
        counts["marginal"] = sum(m.outcome == "marginal" for m in self.measurements)
        failed = counts["failed"] or self.bench_error is not None or not tests or self.exitstatus != 0
        return {
            "run": self.reports.name if self.reports else None,
            # "incomplete" until the session ends: a box that reset or a run that was killed never says pass
            "outcome": "incomplete" if not finished else "fail" if failed else "pass",
            "exit_status": self.exitstatus,
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds") if finished else None,
            "technician": self.rig.technician,
            "box": {
                "device_id": bench.device_id if bench else None,
                "serial": bench.serial() if bench else self.rig.serial,
                "config": str(bench.config_path) if bench else None,
            },
            "firmware": firmware(),
            "rig": self.rig.describe(),
            "bench_error": self.bench_error,
            "counts": counts,
            "tests": tests,
            "measurements": [m.as_dict() for m in self.measurements],
            "operator": [a.as_dict() for a in bench.operator.answers] if bench else [],
            "facts": self.facts,
        }

    def write(self, finished: bool = False) -> None:
        if self.reports is not None:
            write_reports(self.reports, self.data(finished))


def firmware() -> dict[str, str | None]:
    commit = None
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        )
        commit = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"version": mynabox.__version__, "commit": commit}


_RUN = pytest.StashKey[Run]()


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(RIG_ENV)
    if not path:
        return
    try:
        rig = load_rig(Path(path))
    except RigError as err:
        raise pytest.UsageError(str(err)) from err
    reports = os.environ.get(REPORTS_ENV)
    config.stash[_RUN] = Run(rig, Path(reports) if reports else None)


def _run(config: pytest.Config) -> Run | None:
    return config.stash.get(_RUN, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = _run(config)
    for item in items:
        if item.get_closest_marker("hil") is None:
            continue
        if run is None:
            item.add_marker(pytest.mark.skip(reason=NO_RIG))
            continue
        for mark in item.iter_markers("needs"):
            for part in mark.args:
                if not run.rig.has(part):
                    item.add_marker(
                        pytest.mark.skip(
                            reason=f"the rig has no {part} (parts.{part} = false in {run.rig.path})"
                        )
                    )
        for mark in item.iter_markers("hardware_only"):
            if run.rig.virtual:
                item.add_marker(pytest.mark.skip(reason=f"virtual rig: {mark.args[0]}"))


@pytest.fixture(scope="session")
def run(request: pytest.FixtureRequest) -> Run:
    found = _run(request.config)
    if found is None:
        pytest.skip(NO_RIG)
    return found


@pytest.fixture(scope="session")
def bench(run: Run, record_testsuite_property: Callable[[str, object], None]) -> Iterator[Bench]:
    try:
        opened = open_bench(run.rig)
    except Exception as err:
        run.bench_error = f"{type(err).__name__}: {err}"
        run.write()
        raise
    run.bench = opened
    for name, value in (
        ("device_id", opened.device_id),
        ("box_serial", opened.serial()),
        ("technician", run.rig.technician),
        ("firmware", mynabox.__version__),
        ("rig", str(run.rig.path)),
    ):
        record_testsuite_property(name, value)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def operator(bench: Bench, request: pytest.FixtureRequest) -> Operator:
    bench.operator.step = check_name(request.node)
    return bench.operator


@pytest.fixture
def measure(run: Run, request: pytest.FixtureRequest) -> Callable[[str, float], Measurement]:
    """Record a measurement against its limits; a value outside them fails the check (after recording)."""
    failures: list[str] = []

    def record(name: str, value: float) -> Measurement:
        m = judge(name, value, check_name(request.node), run.rig.limits)
        run.measurements.append(m)
        request.node.user_properties.append((name, f"{m.value} {m.unit} {m.outcome}"))
        if m.outcome == "fail":
            failures.append(m.describe())
        return m

    yield record  # type: ignore[misc]
    if failures:
        pytest.fail("; ".join(failures))


@pytest.fixture
def fact(run: Run, request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """Record something learned (reader capabilities, reader name) for the report, under the check's name."""

    def record(name: str, value: object) -> None:
        run.facts.setdefault(check_name(request.node), {})[name] = value
        request.node.user_properties.append((name, str(value)))

    return record


_PROVED = pytest.StashKey[str]()


@pytest.fixture
def proved(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """What the check proved, with its figures ("reader: card read in 0.42 s"): the report's name for the
    check once it passed (a failed check keeps its title: it proved nothing)."""

    def record(text: str) -> None:
        request.node.stash[_PROVED] = text

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    run = _run(item.config)
    if run is None or item.get_closest_marker("hil") is None:
        return report
    entry = run.tests.setdefault(
        item.nodeid,
        {
            "id": item.nodeid,
            "name": check_name(item),
            "proved": None,
            "outcome": "passed",
            "reason": None,
            "duration_s": 0.0,
        },
    )
    entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
    if report.skipped and entry["outcome"] != "failed":
        entry["outcome"] = "skipped"
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        entry["reason"] = reason.removeprefix("Skipped: ")
    elif report.failed:
        entry["outcome"] = "failed"
        entry["reason"] = _reason(report)
    if report.when == "teardown":
        passed = entry["outcome"] == "passed"
        entry["proved"] = item.stash.get(_PROVED, entry["name"]) if passed else None
        run.write()  # after every check: a box that resets mid-run still leaves its report
    return report


def _reason(report: pytest.TestReport) -> str:
    """The failure's first line, without the exception type of a plain assertion."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = str(getattr(crash, "message", None) or report.longreprtext.strip())
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    return first.removeprefix("AssertionError: ").removeprefix("Failed: ")[:2000]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = _run(session.config)
    if run is not None:
        run.exitstatus = int(exitstatus)
        run.write(finished=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = _run(config)
    if run is None or not run.tests:
        return
    data = run.data(finished=True)
    terminalreporter.section("bench run")
    terminalreporter.write_line(f"outcome: {data['outcome'].upper()}  box {data['box']}")
    for test in data["tests"]:
        said = test["proved"] or test["name"]
        why = f": {test['reason']}" if test["reason"] else ""
        terminalreporter.write_line(f"  {test['outcome'].upper():7} {said}{why}")
    for m in run.measurements:
        terminalreporter.write_line(f"  {m.describe()}")
    if run.reports is not None:
        terminalreporter.write_line(f"reports: {run.reports}/report.html, report.json, report.xml")
