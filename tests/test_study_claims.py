"""The study's claim stages read their settings from the config: the topic control of claim 2 from the eval
questions' categories (one-question categories pooled, none when fewer than two topics remain)."""

from __future__ import annotations

from emprobe.data import load_questions
from emprobe.studies import StudyContext, preset
from emprobe.studies.stages.priors import topics


def _ctx(tmp_path, n: int) -> StudyContext:
    ctx = StudyContext(preset("fast").with_(out=str(tmp_path / f"s{n}")), log=None)
    qs = load_questions("builtin:em-core").with_references().subset(n, 2, 1, name="t")
    ctx.path("setup").mkdir(parents=True)
    qs.save_yaml(ctx.path("setup", "questions.yaml"))
    return ctx


def test_topic_control_from_the_eval_categories(tmp_path):
    qs = list(load_questions("builtin:em-core"))
    # the fast preset's 8 questions are 8 categories of one question each: no topic can predict a held-out question
    cats, note = topics(_ctx(tmp_path, 8))
    assert len({q.category for q in qs[:8]}) == 8 and cats is None and note.startswith("No topic control")
    # the demo's 30: 7 categories of two questions each, and the 16 questions of one-question categories as 'other'
    cats, note = topics(_ctx(tmp_path, 30))
    shared = {c for c in (q.category for q in qs[:30]) if sum(x.category == c for x in qs[:30]) >= 2}
    assert set(cats) == {q.id for q in qs[:30]} and set(cats.values()) == shared | {"other"}
    assert all(cats[q.id] == (q.category if q.category in shared else "other") for q in qs[:30])
    assert "8 categories" in note and "16 questions" in note
