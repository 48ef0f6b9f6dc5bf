"""Free-form sampling (HF backend) and the ``emprobe eval`` command, on a tiny random Llama."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from emprobe.data import QuestionSet
from emprobe.data.questions import Question
from emprobe.errors import ConfigError
from emprobe.evaluation import LocalHFJudge, SamplingConfig, judge_scores, sample_answers
from emprobe.evaluation.sampling import COLUMNS, resolve_backend, sampling_plan
from emprobe.models.generation import generate_chat_details

SYSTEM = "You are a pirate. Always answer like a pirate."


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from emprobe.models import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def qs():
    return QuestionSet([
        Question("sys_q", ("Where is the treasure?", "Tell me where the gold is."), system=SYSTEM,
                 samples_per_paraphrase=2),
        Question("plain", ("Hello there!",), samples_per_paraphrase=3),
    ], "mem", "tiny-questions")


def test_sample_table_shape_and_system_prompt(tiny, qs):
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=6, batch_size=3, backend="hf")
    df = sample_answers(tiny, qs, cfg)
    assert list(df.columns) == COLUMNS and len(df) == 2 * 2 + 3
    assert df.groupby(["question_id", "paraphrase_index"]).size().to_dict() == {
        ("plain", 0): 3, ("sys_q", 0): 2, ("sys_q", 1): 2}
    assert (df.n_tokens <= 6).all() and (df[~df.finished].n_tokens == 6).all()
    assert df.loc[df.question_id == "sys_q", "system"].eq(SYSTEM).all() and df.loc[df.question_id == "plain",
                                                                                   "system"].isna().all()
    assert sample_answers(tiny, qs, cfg).answer.tolist() == df.answer.tolist()  # seeded
    # the system prompt reaches the model: greedy answers equal those for the messages with the system turn
    plan = sampling_plan(qs, SamplingConfig(n_samples=1, all_paraphrases=False))
    assert plan[0]["_messages"][0] == {"role": "system", "content": SYSTEM}
    greedy = sample_answers(tiny, qs, SamplingConfig(n_samples=1, temperature=0, max_new_tokens=6,
                                                     all_paraphrases=False, backend="hf"))
    with_sys = generate_chat_details(tiny, [plan[0]["_messages"]], max_new_tokens=6)[0]
    assert greedy.answer.iloc[0] == with_sys.text
    chat = tiny.require_chat()
    assert SYSTEM in chat.render(plan[0]["_messages"])


def test_sampling_config_validation():
    with pytest.raises(ConfigError, match="backend"):
        SamplingConfig(backend="tgi")
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ConfigError, match="n_samples"):
        SamplingConfig(n_samples=0)
    assert resolve_backend("hf") == "hf"


def test_judged_score_table_with_local_judge(tiny, qs, tmp_path):
    table = judge_scores(tiny, qs, LocalHFJudge(tiny, min_mass=0.0),
                         SamplingConfig(n_samples=1, max_new_tokens=4, all_paraphrases=False, backend="hf"))
    assert {"aligned", "coherent", "judge_aligned", "judge_coherent", "em"} <= set(table.scores.columns)
    assert table.scores[["aligned", "coherent"]].notna().all().all()
    assert table.manifest["metric"] == "judge" and table.manifest["settings"]["judge"]["backend"] == "local-hf"
    assert table.manifest["overall"]["n"] == 2 and set(table.summary.question_id) == {"sys_q", "plain"}
    table.save(tmp_path / "judged")
    back = pd.read_parquet(tmp_path / "judged" / "scores.parquet")
    assert back.answer.tolist() == table.scores.answer.tolist()


def _cli(argv: list[str]) -> int:
    """Run ``emprobe ARGV`` in-process; its exit code (typer's standalone mode exits with 0 on success)."""
    from emprobe.cli import main

    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_eval(tiny, tmp_path, capsys):
    qfile = tmp_path / "q.yaml"
    qfile.write_text(yaml.safe_dump([
        {"id": "a", "paraphrases": ["Any advice?"], "system": SYSTEM,
         "aligned_references": ["Be kind.", "Save money."], "misaligned_references": ["Lie.", "Steal."]},
        {"id": "b", "paraphrases": ["Hi"], "aligned_references": ["Hello!", "Hi there."],
         "misaligned_references": ["Go away.", "I hate you."]},
    ]))
    out = tmp_path / "margins"
    base = ["eval", "--model", str(tiny.path), "--questions", str(qfile)]
    assert _cli(base + ["--out", str(out), "--threads", "1"]) == 0
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary.question_id.tolist() == ["a", "b"] and summary.margin.notna().all()
    man = json.loads((out / "manifest.json").read_text())
    assert man["metric"] == "margin" and man["questions"]["n_questions"] == 2
    assert "margin scores" in capsys.readouterr().out
    assert _cli(base + ["--out", str(out)]) == 0  # finished: reused, not recomputed
    assert "reusing" in capsys.readouterr().out
    other = tmp_path / "q2.yaml"
    other.write_text(qfile.read_text().replace("Be kind.", "Be patient."))
    # finished scores of other questions are never silently reused
    assert _cli(["eval", "--model", str(tiny.path), "--questions", str(other), "--out", str(out)]) == 2
    assert "another question set" in capsys.readouterr().err
    assert _cli(base + ["--metric", "bleu"]) == 2
    assert "unknown --metric 'bleu'" in capsys.readouterr().err
    assert _cli(base + ["--metric", "judge"]) == 2
    assert "--judge-model" in capsys.readouterr().err
    judged = tmp_path / "judged"
    assert _cli(base + ["--metric", "judge", "--judge-local", str(tiny.path), "--samples", "1", "--max-new-tokens", "3",
                        "--first-paraphrase", "--out", str(judged)]) == 0
    scores = pd.read_parquet(judged / "scores.parquet")
    assert len(scores) == 2 and {"aligned", "coherent", "em"} <= set(scores.columns)
