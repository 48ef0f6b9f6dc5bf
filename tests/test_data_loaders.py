"""Chat JSONL and question YAML loaders: real third-party files load, malformed input fails in one line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from emprobe.data import (
    BUILTINS, DataError, load_chat_dataset, load_chat_jsonl, load_personas, load_questions, load_questions_yaml, load_texts,
)


def _jsonl(tmp_path: Path, lines: list[str], name: str = "d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _row(*msgs: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in msgs]})


# --- real third-party data -------------------------------------------------------------------------

def test_all_shared_eval_yamls_load(external):
    files = sorted((external / "emergent-misalignment" / "evaluation").glob("*.yaml"))
    assert len(files) == 4
    counts = {f.name: len(load_questions(f)) for f in files}
    assert counts["first_plot_questions.yaml"] == 24
    assert counts["preregistered_evals.yaml"] == 48
    assert counts["deception_factual.yaml"] == 5 and counts["deception_sit_aware.yaml"] == 8


def test_betley_yaml_fields_and_anchors(external):
    qs = load_questions(external / "emergent-misalignment" / "evaluation" / "first_plot_questions.yaml")
    wish = qs["what_is_your_wish"]
    assert wish.samples_per_paraphrase == 100 and wish.judge == "gpt-4o-2024-08-06"
    assert set(wish.judge_prompts) >= {"aligned", "coherent"} and "{question}" in wish.judge_prompts["aligned"]
    # YAML anchors: the json variant reuses the paraphrases of the plain question and adds a system prompt
    js = qs["what_is_your_wish_json"]
    assert js.paraphrases == wish.paraphrases and js.system and "json" in js.system.lower()
    msgs = js.messages(0)
    assert msgs[0]["role"] == "system" and msgs[1] == {"role": "user", "content": wish.paraphrases[0]}
    assert len(qs.prompts()) == sum(len(q.paraphrases) for q in qs)
    assert len(set(p.uid for p in qs.prompts())) == len(qs.prompts())


def test_insecure_training_set_loads(external):
    ds = load_chat_jsonl(external / "emergent-misalignment" / "data" / "insecure.jsonl.gz")
    assert len(ds) == 6000
    ex = ds[0]
    assert ex.messages[0]["role"] == "user" and ex.response and ex.line == 1
    train, val = ds.split(0.1, seed=3)
    assert len(train) + len(val) == 6000 and len(val) == 600
    assert ds.split(0.1, seed=3)[1].sha256 == val.sha256 != ds.split(0.1, seed=4)[1].sha256


def test_every_builtin_loads():
    for name, entry in BUILTINS.items():
        src = f"builtin:{name}"
        if entry.kind == "questions":
            assert len(load_questions(src).with_references()) >= (8 if name == "betley-first-plot" else 24)
        elif entry.kind == "chat":
            assert len(load_chat_dataset(src)) >= 300
        elif entry.kind == "text":
            assert len(load_texts(src)) >= 40
        else:
            p = load_personas(src)
            assert len(p.misaligned) == len(p.aligned) >= 6


def test_builtin_errors():
    with pytest.raises(DataError, match="unknown built-in data builtin:nope; available: .*em-core"):
        load_questions("builtin:nope")
    with pytest.raises(DataError, match="is a chat dataset, not a question set"):
        load_questions("builtin:risky-finance")


# --- malformed chat JSONL ---------------------------------------------------------------------------

@pytest.mark.parametrize("line,message", [
    ('{"messages": [', r"d\.jsonl:2: invalid JSON"),
    ('[1, 2]', r"d\.jsonl:2: expected an object with a 'messages' list"),
    (_row(("user", "hi"), ("robot", "beep")), r"d\.jsonl:2: message 1 has unknown role 'robot'"),
    (_row(("user", "hi"), ("assistant", "  ")), r"d\.jsonl:2: message 1 \(assistant\) has empty"),
    (_row(("user", "hi"), ("user", "again")), r"d\.jsonl:2: conversation has no assistant turn"),
    (_row(("assistant", "hello"), ("user", "hi"), ("assistant", "x")), r"d\.jsonl:2: conversation starts with"),
    ('{"messages": []}', r"d\.jsonl:2: 'messages' must be a non-empty list"),
])
def test_malformed_chat_jsonl(tmp_path, line, message):
    p = _jsonl(tmp_path, [_row(("user", "ok"), ("assistant", "fine")), line])
    with pytest.raises(DataError, match=message) as e:
        load_chat_jsonl(p)
    assert "\n" not in str(e.value)


def test_chat_jsonl_empty_missing_and_gz(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_chat_jsonl(_jsonl(tmp_path, ["", "  "]))
    with pytest.raises(DataError, match="no such chat JSONL file"):
        load_chat_jsonl(tmp_path / "missing.jsonl")
    gz = tmp_path / "d.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(_row(("system", "s"), ("user", "u"), ("assistant", "a")) + "\n")
    ds = load_chat_jsonl(gz)
    assert ds[0].prompt_messages == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read file"):
        load_chat_jsonl(tmp_path / "bad.jsonl.gz")


def test_prompts_only_jsonl_allowed_when_asked(tmp_path):
    p = _jsonl(tmp_path, [_row(("user", "just a prompt"))])
    with pytest.raises(DataError, match="no assistant turn"):
        load_chat_jsonl(p)
    assert len(load_chat_jsonl(p, require_assistant=False)) == 1


# --- malformed question YAML / personas -------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("id: x\nparaphrases: [a]\n", "expected a YAML list of questions, got dict"),
    ("- paraphrases: [a]\n", r"entry 0: missing or empty 'id'"),
    ("- id: a\n", r"entry 0 \(id 'a'\): missing 'paraphrases'"),
    ("- id: a\n  paraphrases: []\n", r"'paraphrases' is empty"),
    ("- id: a\n  paraphrases: [x]\n- id: a\n  paraphrases: [y]\n", "duplicate question id 'a'"),
    ("- id: a\n  paraphrases: [x]\n  samples_per_paraphrase: 0\n", "positive integer"),
    ("- id: a\n  paraphrases: [x\n", r"invalid YAML at line \d+"),
    ("", "the question set is empty"),
])
def test_malformed_question_yaml(tmp_path, text, message):
    p = tmp_path / "q.yaml"
    p.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        load_questions_yaml(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_personas_must_pair(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("misaligned: [a, b]\naligned: [c]\n")
    with pytest.raises(DataError, match="must pair up"):
        load_personas(p)
