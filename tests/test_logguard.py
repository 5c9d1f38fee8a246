"""The log guard can fail: a test that logs a synthetic patient's data is caught (tests/logguard.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from logguard import leaks, markers
from mynabox_testkit.patients import patient

pytest_plugins = ("pytester",)
TESTS = Path(__file__).resolve().parent

P = patient("warfarin-elderly")
LEAKY = {
    "name": f"lookup for {P.name}",
    "name_no_space": f"lookup for {P.name.replace(' ', '')}",
    "kana": f"patient {P.kana}",
    "birth": f"born {P.birth_date.isoformat()}",
    "insurer": f"insurer={P.insurer_number}",
    "drug": f"drug {P.prescriptions[0].drug_name}",
    "cn": f"certificate CN={P.card_id}",
}


@pytest.mark.parametrize("text", LEAKY.values(), ids=LEAKY.keys())
def test_each_kind_of_personal_data_is_found(text: str) -> None:
    assert leaks(text)


@pytest.mark.parametrize(
    "text",
    [
        "read delivered present_to_puback_ms=11.4 card_ms=1.8",
        f"accepted summary {'0' * 24}{P.insurer_number[:8]} from amb-test",  # inside a hex id
        "card 4f8172321f991511 read: flags anticoagulant",
        "",
    ],
)
def test_ordinary_log_lines_pass(text: str) -> None:
    assert leaks(text) == []


def test_every_patient_contributes_markers() -> None:
    from mynabox_testkit.patients import PATIENTS

    kinds = set(markers().values())
    for p in PATIENTS:
        assert f"name of {p.key}" in kinds and f"certificate CN of {p.key}" in kinds


def test_a_test_that_logs_personal_data_fails(pytester: pytest.Pytester) -> None:
    # The guard of this very conftest, in a separate pytest run (its own root logger).
    shutil.copy(TESTS / "logguard.py", pytester.path / "logguard.py")
    shutil.copy(TESTS / "conftest.py", pytester.path / "conftest.py")
    pytester.makepyfile(
        test_inner=f"""
import logging, threading
from pathlib import Path
import pytest

log = logging.getLogger("mynabox.app.delivery")

def test_logs_a_name():
    log.info("lookup for %s", {P.name!r})

def test_logs_a_birth_date_from_a_thread():
    t = threading.Thread(target=lambda: logging.getLogger("paho").warning("x {P.birth_date.isoformat()}"))
    t.start(); t.join()

def test_logs_an_exception_with_the_cn():
    try:
        raise ValueError("bad certificate {P.card_id}")
    except ValueError:
        log.exception("read failed")

def test_daemon_log_file(tmp_path):
    (tmp_path / "daemon.log").write_text("insurer {P.insurer_number}\\n")

def test_clean(tmp_path):
    log.info("read delivered card_ms=1.8")
    (tmp_path / "daemon.log").write_text("ok\\n")
    (tmp_path / "pcscd.log").write_text("APDU {P.card_id}\\n")  # the harness's APDU trace: not scanned

@pytest.mark.allow_personal_data_in_logs
def test_allowed():
    log.info("lookup for %s", {P.name!r})
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=6, errors=4)  # the four leaky tests, at their teardown
    out = result.stdout.str()
    for kind in ["name of", "birth date of", "certificate CN of", "daemon.log: insurer number of"]:
        assert kind in out, out
    assert "test_clean" not in out.split("short test summary info")[-1]
