"""report.html is one self-contained page: plots embedded, text escaped, sections in order."""

from __future__ import annotations

import base64

import pytest

from emprobe.errors import DataError
from emprobe.io import write_json
from emprobe.report import render_summary


def _plot(path):
    from emprobe.result import new_figure

    fig, (ax,) = new_figure(1)
    ax.plot([0, 1], [1, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_render_embeds_plots_and_escapes(tmp_path):
    _plot(tmp_path / "margins" / "plot.png")
    summary = {
        "model": "tiny", "settings": {"fast": True, "steps": 4}, "timing": {"stages": {"margins": {"seconds": 1.0}}},
        "setup": {"n_questions": 30, "n_available": 103, "n_references": 2, "n_references_available": 3,
                  "questions": "builtin:em-core"},
        "section_order": ["samples", "margins"],
        "sections": {
            "margins": {"title": "Margins", "findings": ["rise +0.1 (95% CI [0.05, 0.15])"], "numbers": {"rise": 0.1},
                        "control": "aligned control", "uncertainty": "bootstrap", "plots": ["margins/plot.png"]},
            "samples": {"title": "Answers", "findings": ["2 questions"], "numbers": {"q_rise": 0.2},
                        "control": "c", "uncertainty": "u",
                        "rows": [{"question": "Q?", "margin_base": -0.1, "margin_misaligned": 0.1,
                                  "margin_control": -0.2, "base": "<b>hi</b>", "misaligned": "x", "control": "y"}]},
        },
    }
    write_json(tmp_path / "summary.json", summary)
    page = render_summary(tmp_path).read_text()
    png = base64.b64encode((tmp_path / "margins" / "plot.png").read_bytes()).decode()
    assert f"data:image/png;base64,{png}" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page
    assert page.index("Answers") < page.index("Margins</h2>")  # section_order is kept
    assert "http://" not in page and "https://" not in page
    assert "30 of 103 off-domain questions from builtin:em-core (2 of 3 reference pair(s) each)" in page


def test_render_without_summary_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no summary.json"):
        render_summary(tmp_path)


def test_report_opens_with_the_verdicts(tmp_path):
    verdicts = [{"id": "Claim 1", "stage": "dynamics", "claim": "no schedule is better aligned at equal loss",
                 "verdict": "supported", "number": "spread 0.01 [−0.02, 0.03]", "control": "controls excluded",
                 "uncertainty": "bootstrap over questions", "reason": ""},
                {"id": "Claim 3", "stage": "overlap", "claim": "shared subspace specific to misaligned training",
                 "verdict": "not supported", "number": "Δ 0.01 [−0.05, 0.06]", "control": "aligned control run",
                 "uncertainty": "bootstrap <CI>", "reason": "the control shows the same overlap",
                 "tested": "misaligned − control overlap on held-out questions", "sesoi": "overlap 0.05 <declared>"}]
    summary = {"model": "tiny", "verdicts": verdicts, "section_order": ["dynamics"],
               "sections": {"dynamics": {"title": "Loss vs alignment", "findings": ["x 1"], "numbers": {},
                                         "control": "c", "uncertainty": "u", "verdict": verdicts[0]}}}
    write_json(tmp_path / "summary.json", summary)
    page = render_summary(tmp_path).read_text()
    assert page.index('id="verdicts"') < page.index('id="dynamics"')
    assert "v-not-supported" in page and "Claim 3" in page and "bootstrap &lt;CI&gt;" in page
    assert "Verdict: supported" in page
    # the claim as tested and its SESOI stand beside the verdict; the one rule is stated above the table
    assert "As tested: misaligned − control overlap on held-out questions" in page
    assert "<td>overlap 0.05 &lt;declared&gt;</td>" in page and "<th>SESOI</th>" in page
    assert page.index("One rule for every claim") < page.index("<th>SESOI</th>")
