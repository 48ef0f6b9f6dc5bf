"""Render a study summary (``summary.json``) as one self-contained HTML page (images embedded as data URIs)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from emprobe.io import write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}.meta{color:#666;font-size:.9em}.finding{margin:.35em 0}.ctl{color:#555;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}table{border-collapse:collapse;font-size:.85em;
margin:.5em 0}td,th{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.answer{white-space:pre-wrap;max-width:300px}details{margin:.4em 0}summary{cursor:pointer;color:#245}
nav a{margin-right:.8em;font-size:.9em}
.v-supported{background:#e6f4ea}.v-not-supported{background:#fce8e6}.v-inconclusive{background:#fef7e0}
.verdict{font-weight:600}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(path: Path) -> str:
    if not path.is_file():
        return f'<p class="ctl">(plot missing: {_e(path.name)})</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.parent.name)}/{_e(path.name)}" src="data:image/png;base64,{data}">'


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return _e(v)


def _table(rows: list[dict], columns: list[str], answer_cols: set[str] = frozenset()) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = "answer" if c in answer_cols else ("num" if isinstance(v, (int, float)) else "")
            cells.append(f'<td class="{cls}">{_num(v) if cls == "num" else _e("" if v is None else v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(name: str, sec: dict, out: Path) -> str:
    parts = [f'<h2 id="{_e(name)}">{_e(sec.get("title", name))}</h2>']
    v = sec.get("verdict")
    if v:
        parts.append(f'<p class="verdict v-{_e(v["verdict"].replace(" ", "-"))}">Verdict: {_e(v["verdict"])} — '
                     f'{_e(v["claim"])} ({_e(v["number"])}){": " + _e(v["reason"]) if v.get("reason") else ""}</p>')
        parts += [f'<p class="ctl"><b>{label}:</b> {_e(v[k])}</p>' for k, label in (("tested", "As tested"),
                                                                                    ("sesoi", "SESOI")) if v.get(k)]
    parts += [f'<p class="finding">• {_e(f)}</p>' for f in sec.get("findings", [])]
    parts.append(f'<p class="ctl"><b>Control:</b> {_e(sec.get("control", ""))}. '
                 f'<b>Uncertainty:</b> {_e(sec.get("uncertainty", ""))}.</p>')
    parts += [_img(out / p) for p in sec.get("plots", [])]
    if sec.get("rows"):
        parts.append(_table(sec["rows"], ["question", "margin_base", "margin_misaligned", "margin_control",
                                          "base", "misaligned", "control"], {"base", "misaligned", "control"}))
    if sec.get("samples"):
        cols = [c for c in sec["samples"][0] if c != "question_id"]
        parts.append("<details><summary>sampled answers under the intervention</summary>"
                     + _table(sec["samples"], cols, {"answer"}) + "</details>")
    nums = sec.get("numbers", {})
    if nums:
        parts.append("<details><summary>numbers</summary>"
                     + _table([{"quantity": k, "value": v} for k, v in nums.items()], ["quantity", "value"])
                     + "</details>")
    return "\n".join(parts)


def _meta(summary: dict) -> str:
    st, timing = summary.get("settings", {}), summary.get("timing", {})
    datasets = ", ".join(f"{d.get('data')} (control {d.get('control')})" for d in st.get("datasets", []))
    grid = st.get("grid", {})
    ratio = timing.get("analysis_over_finetune")
    return (f"emprobe {_e(summary.get('emprobe_version', '?'))} · {_e(summary.get('preset', 'custom'))} preset · "
            f"{_e(st.get('training', {}).get('steps'))} steps on {_e(datasets)} · schedules "
            f"{_e(', '.join(grid.get('schedules', [])))} · lr {_e(', '.join(f'{x:g}' for x in grid.get('lrs', [])))} · "
            f"{_questions(summary.get('setup', {}))} · {_e(timing.get('total_seconds'))} s on "
            f"{_e(timing.get('threads'))} threads" + (f" · analysis/fine-tuning time {ratio:.2f}x" if ratio else ""))


def _questions(setup: dict) -> str:
    """``30 of 103 off-domain questions from SET (2 of 3 reference pairs each)``: says when a subset is scored."""
    def of(n, have) -> str:
        return f"{_e(n)} of {_e(have)}" if have and have != n else _e(n)

    text = f"{of(setup.get('n_questions'), setup.get('n_available'))} off-domain questions from " \
           f"{_e(setup.get('questions'))}"
    if setup.get("n_references"):
        text += f" ({of(setup['n_references'], setup.get('n_references_available'))} reference pair(s) each)"
    return text


def _verdicts(rows: list[dict]) -> str:
    """The claims' verdicts as the report's opening table (claim, verdict with its reason, number, control,
    uncertainty)."""
    if not rows:
        return ""
    body = "".join(_verdict_row(r) for r in rows)
    return ("<h2 id=\"verdicts\">Verdicts</h2>" + RULE + "<table class=\"verdicts\"><tr><th>claim</th><th>verdict</th>"
            f"<th>number</th><th>SESOI</th><th>control</th><th>uncertainty</th></tr>{body}</table>")


#: the one verdict rule (:mod:`emprobe.analysis.stats.verdict`), stated above the verdicts
RULE = ('<p class="meta">One rule for every claim: each declares its smallest effect of interest (SESOI) before '
        'looking. <b>supported</b>: the 95% CI excludes 0 in the claimed direction (for claim 1, a claim of no '
        'difference: every 90% TOST interval lies inside ±SESOI); <b>not supported</b>: the CI shows the effect '
        'smaller than the SESOI, or of the opposite sign (claim 1: a gap of at least the SESOI is shown); '
        '<b>inconclusive</b>: the data cannot tell, and the reason says why.</p>')


def _verdict_row(r: dict) -> str:
    reason = f"<br><small>{_e(r['reason'])}</small>" if r.get("reason") else ""
    tested = f"<br><small>As tested: {_e(r['tested'])}</small>" if r.get("tested") else ""
    return (f'<tr><td><b>{_e(r["id"])}</b>: {_e(r["claim"])}{tested}</td>'
            f'<td class="v-{_e(r["verdict"].replace(" ", "-"))}"><b>{_e(r["verdict"])}</b>{reason}</td>'
            f'<td>{_e(r["number"])}</td><td>{_e(r.get("sesoi", "–"))}</td><td>{_e(r["control"])}</td>'
            f'<td>{_e(r["uncertainty"])}</td></tr>')


def check_summary(summary: Any, path: str | Path = "summary.json") -> dict:
    """``summary`` when it is a study summary (a JSON object with ``sections``, each an object); else a one-line
    :class:`~emprobe.errors.DataError` (a list, ``{}`` or another tool's file would render an empty report)."""
    from emprobe.errors import DataError

    if not isinstance(summary, dict):
        raise DataError(f"{path}: expected a study summary (a JSON object), got a JSON {type(summary).__name__}")
    sections = summary.get("sections")
    if not isinstance(sections, dict):
        raise DataError(f"{path}: not an emprobe study summary (no sections); rerun the study to write it again")
    bad = [k for k, v in sections.items() if not isinstance(v, dict)]
    if bad:
        raise DataError(f"{path}: section {bad[0]!r} is not a JSON object; the summary was edited or is damaged")
    return summary


def render_report(summary: dict, out: str | Path) -> Path:
    """Write ``out/report.html`` from a demo summary (plots are read from ``out`` and embedded)."""
    out = Path(out)
    sections = summary.get("sections", {})
    order = summary.get("section_order") or list(sections)
    sections = {k: sections[k] for k in order if k in sections}
    timing = summary.get("timing", {})
    nav = "".join(f'<a href="#{_e(k)}">{_e(v.get("title", k))}</a>' for k, v in sections.items())
    stage_rows = [{"stage": k, "seconds": v.get("seconds"), "reused": "yes" if v.get("cached") else "no"}
                  for k, v in timing.get("stages", {}).items()]
    head = (f"<h1>emprobe: emergent misalignment on {_e(summary.get('model', '?'))}</h1>"
            f'<p class="meta">{_meta(summary)}</p>'
            '<p class="meta">Margin = mean log-prob per token of a question\'s misaligned reference answer minus its '
            'aligned one (higher = leans misaligned). Layer l = residual stream after decoder block l '
            '(TransformerLens blocks.l.hook_resid_post).</p>'
            f"<nav>{nav}</nav>{_verdicts(summary.get('verdicts', []))}")
    body = [_section(k, v, out) for k, v in sections.items()]
    body.append("<h2>Run</h2><details><summary>stage timings</summary>"
                + _table(stage_rows, ["stage", "seconds", "reused"]) + "</details>")
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>emprobe report</title>"
            f"<style>{CSS}</style></head><body>{head}{''.join(body)}</body></html>\n")
    return write_text(out / "report.html", page)
