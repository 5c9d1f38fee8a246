"""report.json and report.html of a bench run (report.xml is pytest's own JUnit writer).

The HTML is one self-contained file (inline CSS, no script, no external assets) so it opens on the bench PC
and can be filed with the box. Every value from the run is escaped.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

ANSWER_HEADS = ("asked", "technician", "check", "prompt", "answer", "answered", "waited s")
COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "skipped": "#6e7781", "marginal": "#9a6700"}


def write_reports(directory: Path, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic(directory / "report.json", json.dumps(data, ensure_ascii=False, indent=2, default=str))
    _atomic(directory / "report.html", render_html(data))


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(widths: tuple[int, ...], head: tuple[str, ...], rows: list[str]) -> str:
    """A table of fixed column widths (per cent) whose cells wrap anywhere: no value, however long,
    widens the page (the report is read at 1000 px without sideways scrolling)."""
    cols = "".join(f"<col style='width:{w}%'>" for w in widths)
    heads = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><colgroup>{cols}</colgroup><tr>{heads}</tr>{''.join(rows)}</table>"


def _outcome(outcome: str) -> str:
    colour = COLOURS.get({"pass": "passed", "fail": "failed"}.get(outcome, outcome), "#000")
    return f"<td style='color:{colour};font-weight:bold'>{_e(outcome.upper())}</td>"


def _beside(m: dict[str, Any]) -> str:
    """A measurement beside its limit: "card_read_ms 420 ms, limit ≤ 1000 ms (marginal above 600): PASS"."""
    return f"{m['name']} {m['value']:g} {m['unit']}, limit {m.get('limit') or '?'}: {m['outcome'].upper()}"


def render_html(data: dict[str, Any]) -> str:
    box, counts = data.get("box", {}), data.get("counts", {})
    verdict = data.get("outcome", "?")
    measurements: list[dict[str, Any]] = data.get("measurements", [])
    rows = []
    for test in data.get("tests", []):
        measured = "<br>".join(_e(_beside(m)) for m in measurements if m["test"] == test["name"])
        rows.append(
            f"<tr><td>{_e(test.get('proved') or test['name'])}</td>{_outcome(test['outcome'])}"
            f"<td>{measured}</td><td>{_e(test.get('reason') or '')}</td>"
            f"<td>{test.get('duration_s', 0):.2f}</td></tr>"
        )
    values = [
        f"<tr><td>{_e(m['name'])}<br><small>{_e(m.get('what'))}</small></td>"
        f"<td>{_e(m['value'])} {_e(m['unit'])}</td><td>{_e(m.get('limit'))}</td>{_outcome(m['outcome'])}"
        f"<td>{_e(m['test'])}</td></tr>"
        for m in measurements
    ]
    learned = [
        f"<tr><td>{_e(check)}</td><td>{_e(name)}</td><td>{_e(value)}</td></tr>"
        for check, found in data.get("facts", {}).items()
        for name, value in found.items()
    ]
    answers = [
        f"<tr><td>{_e(a['asked_at'])}</td><td>{_e(a['technician'])}</td><td>{_e(a['step'])}</td>"
        f"<td>{_e(a['prompt'])}</td><td>{_e('(no answer)' if a['answer'] is None else a['answer'])}</td>"
        f"<td>{_e(a['answered_at'])}</td><td>{a['waited_s']:.1f}</td></tr>"
        for a in data.get("operator", [])
    ]
    facts = [
        ("run", data.get("run")),
        ("outcome", verdict),
        ("device id", box.get("device_id")),
        ("box serial", box.get("serial")),
        ("firmware", " ".join(filter(None, data.get("firmware", {}).values()))),
        ("technician", data.get("technician")),
        ("rig", data.get("rig", {}).get("file")),
        ("started", data.get("started_at")),
        ("finished", data.get("finished_at")),
        ("counts", ", ".join(f"{k} {v}" for k, v in counts.items())),
        ("bench error", data.get("bench_error")),
    ]
    rig = json.dumps(data.get("rig", {}), ensure_ascii=False, indent=2, default=str)
    colour = COLOURS["passed" if verdict == "pass" else "failed"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>mynabox bench {_e(data.get("run"))}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; width: 100%; table-layout: fixed; }}
td, th {{ border: 1px solid #d0d7de; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }} pre {{ background: #f6f8fa; padding: 0.5em; white-space: pre-wrap; }}
h1, td, th, pre {{ overflow-wrap: anywhere; }}
</style></head><body>
<h1>mynabox bench run <span style="color:{colour}">{_e(verdict.upper())}</span></h1>
{_table((20, 80), ("", ""), [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts if v])}
<h2>Checks</h2>
{_table((36, 8, 26, 24, 6), ("check", "outcome", "measured, beside its limit", "why", "s"), rows)}
<h2>Measurements</h2>
{_table((24, 14, 26, 9, 27), ("measurement", "value", "limit", "outcome", "check"), values)}
<h2>What was learned</h2>
{_table((35, 20, 45), ("check", "what", "value"), learned)}
<h2>Technician's answers</h2>
{_table((13, 10, 20, 30, 8, 13, 6), ANSWER_HEADS, answers)}
<h2>Rig</h2><pre>{_e(rig)}</pre>
</body></html>
"""
