"""`mynabox update`: the bootloader backend's answers and refusals, init-bootstate, status without RAUC."""

from __future__ import annotations

from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.cli import main
from mynabox.update import bootstate as bs


def backend(tmp_path: Path, *args: str) -> int:
    cmdline = str(tmp_path / "cmdline")
    return main(["update", "bootloader-backend", "--dir", str(tmp_path), "--cmdline", cmdline, *args])


def test_init_then_rauc_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["update", "init-bootstate", str(tmp_path)]) == 0
    assert BootFiles(tmp_path).read() == bs.Reading(bs.INITIAL, 0, bs.Damage.OK)
    capsys.readouterr()
    assert backend(tmp_path, "get-primary") == 0
    assert backend(tmp_path, "get-state", "B") == 0
    assert capsys.readouterr().out.split() == ["A", "bad"]
    assert backend(tmp_path, "set-primary", "B") == 0
    assert backend(tmp_path, "get-primary") == 0
    assert backend(tmp_path, "get-state", "B") == 0
    assert capsys.readouterr().out.split() == ["B", "good"]
    assert BootFiles(tmp_path).read().state.trial == "B"
    assert backend(tmp_path, "set-state", "B", "bad") == 0
    assert (BootFiles(tmp_path).read().state.order, BootFiles(tmp_path).read().state.trial) == (("A",), None)
    (tmp_path / "cmdline").write_text("root=x rauc.slot=B quiet\n")
    assert backend(tmp_path, "get-current") == 0
    assert capsys.readouterr().out.strip() == "B"


@pytest.mark.parametrize(
    "args",
    [("get-state", "C"), ("set-primary", "../x"), ("set-state", "A"), ("set-primary",), ("get-current",)],
)
def test_bad_calls_fail_with_a_reason_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    main(["update", "init-bootstate", str(tmp_path)])
    before = [p.read_bytes() for p in sorted(tmp_path.glob("bootstate.*"))]
    (tmp_path / "cmdline").write_text("root=x\n")
    assert backend(tmp_path, *args) == 1
    assert "bootloader-backend" in capsys.readouterr().err
    assert [p.read_bytes() for p in sorted(tmp_path.glob("bootstate.*"))] == before


def test_no_slot_with_tries_fails_get_primary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    BootFiles(tmp_path).write(0, bs.BootState(("A",), 0, 0, 1))
    assert backend(tmp_path, "get-primary") == 1
    assert "no slot has tries left" in capsys.readouterr().err


def test_the_health_check_refuses_a_restart_count_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    # 0 would call a daemon not yet started dead, and every boot would go back to the other slot.
    with pytest.raises(SystemExit) as info:
        main(["update", "health", "--max-restarts", "0"])
    assert info.value.code == 2
    assert "--max-restarts: 0: at least 1" in capsys.readouterr().err


def test_status_names_the_slot_on_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cmdline").write_text("rauc.slot=A mynabox.bootstate=ok\n")
    (tmp_path / "rauc.json").write_text('{"compatible": "mynabox-rpi-arm64", "booted": "A", "slots": []}')
    BootFiles(tmp_path).write(0, bs.set_primary(bs.BootState(("A", "B"), 2, 0, 6), "B"))

    def status() -> str:
        args = ["--dir", str(tmp_path), "--cmdline", str(tmp_path / "cmdline")]
        assert main(["update", "status", *args, "--rauc-json", str(tmp_path / "rauc.json")]) == 0
        return next(
            line for line in capsys.readouterr().out.splitlines() if line.startswith("boot state now")
        )

    assert status() == "boot state now: order B A, B on trial, tries A 2 B 3, seq 6 (copy 0, copy1-bad)"
    BootFiles(tmp_path).change(lambda state: bs.set_state(state, "B", good=True))
    assert status() == "boot state now: order B A, tries A 2 B 3, seq 7 (copy 1, ok)"
