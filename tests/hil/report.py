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


def render_html(data: dict[str, Any]) -> str:
    box, counts = data.get("box", {}), data.get("counts", {})
    verdict = data.get("outcome", "?")
    rows = []
    for test in data.get("tests", []):
        colour = COLOURS.get(test["outcome"], "#000")
        rows.append(
            f"<tr><td>{_e(test['name'])}</td><td style='color:{colour};font-weight:bold'>"
            f"{_e(test['outcome'].upper())}</td><td>{_e(test.get('reason') or '')}</td>"
            f"<td>{test.get('duration_s', 0):.2f}</td></tr>"
        )
    measurements = []
    for m in data.get("measurements", []):
        colour = COLOURS.get({"pass": "passed", "fail": "failed"}.get(m["outcome"], m["outcome"]), "#000")
        measurements.append(
            f"<tr><td>{_e(m['name'])}</td><td>{_e(m['value'])} {_e(m['unit'])}</td>"
            f"<td>{_e(m['low'])}</td><td>{_e(m['high'])}</td><td>{_e(m['marginal_low'])}</td>"
            f"<td>{_e(m['marginal_high'])}</td><td style='color:{colour};font-weight:bold'>{_e(m['outcome'])}"
            f"</td><td>{_e(m['test'])}</td></tr>"
        )
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
    ]
    rig = json.dumps(data.get("rig", {}), ensure_ascii=False, indent=2, default=str)
    colour = COLOURS["passed" if verdict == "pass" else "failed"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mynabox bench {_e(data.get("run"))}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #d0d7de; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }} pre {{ background: #f6f8fa; padding: 0.5em; }}
</style></head><body>
<h1>mynabox bench run <span style="color:{colour}">{_e(verdict.upper())}</span></h1>
<table>{"".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)}</table>
<h2>Checks</h2>
<table><tr><th>check</th><th>outcome</th><th>reason</th><th>s</th></tr>{"".join(rows)}</table>
<h2>Measurements</h2>
<table><tr><th>name</th><th>value</th><th>low</th><th>high</th><th>marginal low</th><th>marginal high</th>
<th>outcome</th><th>check</th></tr>{"".join(measurements)}</table>
<h2>Technician's answers</h2>
<table><tr><th>asked</th><th>technician</th><th>check</th><th>prompt</th><th>answer</th><th>answered</th>
<th>waited s</th></tr>{"".join(answers)}</table>
<h2>Rig</h2><pre>{_e(rig)}</pre>
</body></html>
"""
