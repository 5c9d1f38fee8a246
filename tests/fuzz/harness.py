"""What the fuzz targets share, and `make fuzz`'s runner.

A target is a module ``fuzz_<name>.py`` beside this one with ``setup() -> Callable[[bytes], None]``: setup
imports what it tests (so atheris instruments it) and returns the one-input function. That function catches
the refusals its parser is meant to raise; anything else escaping it is a defect.

- ``python tests/fuzz/fuzz_<name>.py [libFuzzer args]`` fuzzes one target with atheris. Python exceptions are
  collected rather than ending the run: each new one (type and innermost frame of ours) is written once to
  ``$MYNABOX_FUZZ_CRASHES`` (input and traceback) and the run goes on, so one shallow bug does not hide the
  next. ``MYNABOX_FUZZ_STRICT=1`` lets the exception through (libFuzzer stops, as usual).
- ``python tests/fuzz/harness.py [--seconds N] [target ...]`` runs each target for N s (``FUZZ_SECONDS``,
  default 60) from its corpus in ``tests/fuzz/corpus/<name>/`` (read only: new inputs go to
  ``build/fuzz/<name>/corpus``) and prints executions/s, coverage, CPU time and crashes per target.
- ``tests/fuzz/test_corpus.py`` replays every corpus file through its target in the normal test run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parents[1]
OUT = ROOT / "build" / "fuzz"


def targets() -> list[str]:
    return sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def load(name: str) -> Callable[[bytes], None]:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(f"fuzz_{name}")
    one_input: Callable[[bytes], None] = module.setup()
    return one_input


class Reader:
    """Takes typed values off the front of a fuzz input; past its end it gives zeros and empty strings."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def left(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + max(0, n)]
        self._pos += len(out)
        return out

    def byte(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def u16(self) -> int:
        return int.from_bytes(self.take(2).ljust(2, b"\0"), "big")

    def chunk(self) -> bytes:
        """A length-prefixed (u16) piece."""
        return self.take(self.u16())

    def rest(self) -> bytes:
        return self.take(self.left())


def _signature(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/mynabox/" in f.filename] or frames
    last = ours[-1] if ours else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(err).__name__} at {where}"


def main(setup: Callable[[], Callable[[bytes], None]], *, include: tuple[str, ...] = ("mynabox",)) -> None:
    """Fuzz one target with atheris (called from a target module's ``__main__``); ``include``: the packages
    to instrument (the bench's rig files are parsed in ``tests/hil``, the package ``hil``)."""
    import atheris

    with atheris.instrument_imports(include=list(include)):
        one_input = setup()
    strict = os.environ.get("MYNABOX_FUZZ_STRICT") == "1"
    crashes = Path(os.environ.get("MYNABOX_FUZZ_CRASHES", OUT / "crashes"))
    seen: set[str] = set()

    def test_one(data: bytes) -> None:
        try:
            one_input(data)
        except Exception as err:
            if strict:
                raise
            sig = _signature(err)
            if sig in seen:
                return
            seen.add(sig)
            crashes.mkdir(parents=True, exist_ok=True)
            stem = hashlib.sha256(sig.encode()).hexdigest()[:12]
            (crashes / f"{stem}.bin").write_bytes(data)
            text = "".join(traceback.format_exception(err))
            (crashes / f"{stem}.txt").write_text(f"{sig}\ninput (hex): {data.hex()}\n\n{text}")
            print(f"NEW CRASH {sig} -> {crashes / stem}.bin", file=sys.stderr, flush=True)

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


# --- `make fuzz` -----------------------------------------------------------------------------------------

_STATS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+.*?exec/s: (\d+)", re.M)


def _run_target(name: str, seconds: int) -> dict[str, object]:
    work = OUT / name
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    crashes = work / "crashes"
    before = len(list(crashes.glob("*.bin"))) if crashes.is_dir() else 0
    env = dict(os.environ, MYNABOX_FUZZ_CRASHES=str(crashes), PYTHONHASHSEED="0")
    cmd = [
        sys.executable,
        str(HERE / f"fuzz_{name}.py"),
        str(work / "corpus"),
        str(CORPUS / name),
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=1536",
        "-max_len=16384",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
    ]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with (work / "log").open("w") as log:
        rc = subprocess.run(cmd, stderr=log, stdout=log, env=env, check=False).returncode
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    text = (work / "log").read_text(errors="replace")
    stats = _STATS.findall(text)
    execs, cov, ft, corp, rate = (int(v) for v in stats[-1]) if stats else (0, 0, 0, 0, 0)
    new = len(list(crashes.glob("*.bin"))) - before if crashes.is_dir() else 0
    artifacts = [
        p.name for p in work.glob("*-*") if p.name.split("-")[0] in {"crash", "timeout", "oom", "leak"}
    ]
    return {
        "target": name,
        "executions": execs,
        "exec_per_s": round(execs / wall) if wall else rate,
        "coverage": cov,
        "features": ft,
        "corpus": corp,
        "cpu_s": round(cpu, 1),
        "crashes_new": new,
        "crashes_total": len(list(crashes.glob("*.bin"))) if crashes.is_dir() else 0,
        "libfuzzer_artifacts": artifacts,
        "exit": rc,
    }


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(targets())})")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    args = parser.parse_args()
    names = args.targets or targets()
    unknown = sorted(set(names) - set(targets()))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    rows = []
    print(f"{'target':<16} {'execs':>9} {'exec/s':>7} {'cov':>6} {'ft':>6} {'cpu s':>7} crashes")
    for name in names:
        row = _run_target(name, args.seconds)
        rows.append(row)
        extra = f" + libFuzzer {row['libfuzzer_artifacts']}" if row["libfuzzer_artifacts"] else ""
        print(
            f"{name:<16} {row['executions']:>9} {row['exec_per_s']:>7} {row['coverage']:>6} "
            f"{row['features']:>6} {row['cpu_s']:>7} {row['crashes_new']} new, {row['crashes_total']} "
            f"kept in {OUT / name / 'crashes'}{extra}",
            flush=True,
        )
    total_cpu = sum(float(str(r["cpu_s"])) for r in rows)
    bad = sum(int(str(r["crashes_new"])) + len(r["libfuzzer_artifacts"]) for r in rows)  # type: ignore[arg-type]
    print(f"total CPU {total_cpu / 3600:.3f} h, {bad} new crash(es)")
    print(json.dumps({"fuzz": rows, "cpu_h": round(total_cpu / 3600, 4)}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(cli())
