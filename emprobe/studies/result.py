"""``StudyResult``: what :func:`~emprobe.studies.study` and :func:`~emprobe.studies.demo` return — the study's
``summary.json`` as typed fields: the claims' verdicts, one report section per stage, timings — with the findings,
the report and a notebook view rendered on demand."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from emprobe.result import Result

SUMMARY = "summary.json"
REPORT = "report.html"


@dataclass(frozen=True, eq=False)
class StudyResult(Result):
    """``verdicts``: one row per claim tested (``id``, ``stage``, ``claim``, ``verdict``, ``number``, ``control``,
    ``uncertainty``, ``reason``, and from a study's claim stages ``tested``: the claim as tested, ``sesoi``: its
    smallest effect of interest); ``sections``: stage -> its report section (title, findings, numbers, control,
    uncertainty, plots relative to ``out``); ``timing``: per-stage seconds, fine-tuning vs analysis."""

    out: Path
    model: str
    preset: str
    settings: dict[str, Any]
    setup: dict[str, Any]
    verdicts: list[dict[str, Any]]
    sections: dict[str, dict[str, Any]]
    timing: dict[str, Any]
    emprobe_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "study"
    title: ClassVar[str] = "Study"

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` content."""
        return {"emprobe_version": self.emprobe_version, "model": self.model, "preset": self.preset,
                "settings": self.settings, "setup": self.setup, "verdicts": self.verdicts, "timing": self.timing,
                "section_order": list(self.sections), "sections": self.sections, **self.extra}

    @classmethod
    def from_dict(cls, summary: dict[str, Any], out: str | Path) -> "StudyResult":
        d = dict(summary)
        order = d.pop("section_order", None) or list(d.get("sections", {}))
        sections = d.pop("sections", {})
        return cls(Path(out), d.pop("model", "?"), d.pop("preset", "custom"), d.pop("settings", {}),
                   d.pop("setup", {}), d.pop("verdicts", []), {k: sections[k] for k in order if k in sections},
                   d.pop("timing", {}), d.pop("emprobe_version", ""), d)

    @classmethod
    def load(cls, out: str | Path) -> "StudyResult":
        """The result of the study written to ``out`` (its ``summary.json``)."""
        from emprobe.errors import DataError
        from emprobe.io import read_json

        path = Path(out) / SUMMARY
        if not path.is_file():
            raise DataError(f"{out}: no {SUMMARY} (run `emprobe study` or `emprobe demo` there first)")
        return cls.from_dict(read_json(path), out)

    def save(self, out: str | Path | None = None, overwrite: bool = True) -> Path:
        """Write ``summary.json`` and ``report.html`` into ``out`` (default: the study's own directory); plots
        the sections name are copied along when ``out`` is another directory."""
        import shutil

        from emprobe.io import write_json
        from emprobe.report.html import render_report

        out = Path(out) if out is not None else self.out
        if out.resolve() != self.out.resolve():
            for p in (p for s in self.sections.values() for p in s.get("plots", [])):
                (out / p).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.out / p, out / p)
        write_json(out / SUMMARY, self.to_dict())
        render_report(self.to_dict(), out)
        return out

    # ---- what a Result offers -------------------------------------------------------------------
    def findings(self) -> list[str]:
        """One line per verdict, then each section's first finding."""
        out = [f"{v['id']} ({v['claim']}): {v['verdict']} — {v['number']}" + (f" ({v['reason']})" if v.get("reason")
                                                                             else "")
               + (f" [SESOI: {v['sesoi']}]" if v.get("sesoi") else "") for v in self.verdicts]
        return out + [f"{s.get('title', k)}: {s['findings'][0]}" for k, s in self.sections.items() if s.get("findings")]

    def numbers(self) -> dict[str, Any]:
        keys = ("total_seconds", "computed_seconds", "finetune_seconds", "analysis_seconds", "analysis_over_finetune")
        return {k: self.timing.get(k) for k in keys}

    def tables(self) -> dict[str, pd.DataFrame]:
        stages = [{"stage": k, **v} for k, v in self.timing.get("stages", {}).items()]
        return {"table": pd.DataFrame(self.verdicts), "timing": pd.DataFrame(stages)}

    def section(self, stage: str) -> dict[str, Any]:
        """The report section of ``stage`` (KeyError naming the stages that ran)."""
        if stage not in self.sections:
            raise KeyError(f"no section {stage!r}; this study has {', '.join(self.sections)}")
        return self.sections[stage]

    def report(self, html_text: bool = False) -> Path | str:
        """The path of ``report.html`` (rendered again if missing), or with ``html_text`` its HTML."""
        path = self.out / REPORT
        if not path.is_file():
            from emprobe.report.html import render_report

            render_report(self.to_dict(), self.out)
        return path.read_text(encoding="utf-8") if html_text else path

    # ---- notebook view --------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        def e(x: Any) -> str:
            return html.escape(str(x))

        rows = "".join(
            f'<tr><td><b>{e(v["id"])}</b>: {e(v["claim"])}</td><td style="background:{_COLOURS.get(v["verdict"], "")}">'
            f'<b>{e(v["verdict"])}</b>' + (f'<br><small>{e(v["reason"])}</small>' if v.get("reason") else "")
            + f'</td><td>{e(v["number"])}</td><td>{e(v.get("sesoi", "–"))}</td><td>{e(v["uncertainty"])}</td></tr>'
            for v in self.verdicts)
        table = ("<table><tr><th>claim</th><th>verdict</th><th>number</th><th>SESOI</th><th>uncertainty</th></tr>"
                 f"{rows}</table>") if rows else "<p>(no claim stage ran)</p>"
        secs = "".join(f"<details><summary>{e(s.get('title', k))}</summary><ul>"
                       + "".join(f"<li>{e(f)}</li>" for f in s.get("findings", [])) + "</ul></details>"
                       for k, s in self.sections.items())
        t = self.timing
        return (f"<div><b>emprobe study</b> on {e(self.model)} ({e(self.preset)} preset) · "
                f"{e(t.get('total_seconds'))} s · report: <code>{e(str(self.out / REPORT))}</code>"
                f"{table}{secs}</div>")


_COLOURS = {"supported": "#e6f4ea", "not supported": "#fce8e6", "inconclusive": "#fef7e0"}
