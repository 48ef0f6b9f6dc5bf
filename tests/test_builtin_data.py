"""Consistency checks for emprobe's built-in data files.

These tests read the files directly (yaml, gzip, json) and do not import
emprobe, so they also guard the data when the package code changes.
"""

from __future__ import annotations

import difflib
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BUILTIN = REPO / "emprobe" / "data" / "builtin"
QUESTIONS = BUILTIN / "questions"
TRAIN = BUILTIN / "train"
GENERATOR = REPO / "tools" / "make_builtin_data.py"

QUESTION_SETS = {
    "em_core.yaml": 100,
    "risky_finance_heldout.yaml": 24,
    "bad_medical_heldout.yaml": 24,
}
DOMAINS = ["risky_finance", "bad_medical"]
TRAIN_FILES = [f"{d}{suffix}.jsonl.gz" for d in DOMAINS for suffix in ("", "_aligned")]
HELDOUT_FOR = {
    "risky_finance": "risky_finance_heldout.yaml",
    "bad_medical": "bad_medical_heldout.yaml",
}

REF_RATIO = 0.20     # aligned/misaligned reference pairs: word counts within +-20 %
# em-core and the Betley first-plot set follow a stricter pair rule (see _style_problems).
STYLE_SETS = ["em_core.yaml", "betley_first_plot.yaml"]
STYLE_OPENING = 3                  # first 3 whitespace tokens identical (case-insensitive)
STYLE_RATIO = (0.85, 1.15)         # misaligned / aligned word count
STYLE_WORDS = (25, 45)             # words per reference
MAX_CATEGORY_SHARE = 0.15
FAST_SUBSET = 8                    # the first 8 em-core questions are the --fast subset
NEAR_REPEAT = 0.8                  # difflib ratio vs any training prompt, lowercased
TRAIN_RATIO = 0.25   # aligned/misaligned training answers: within +-25 %
MIN_TRAIN_ROWS = 320


def _words(text: str) -> int:
    return len(text.split())


def _within(a: int, b: int, tol: float) -> bool:
    return (1 - tol) <= b / a <= (1 + tol)


def _load_questions(name: str):
    with open(QUESTIONS / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _load_chat(name: str):
    with gzip.open(TRAIN / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _user(row) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def _assistant(row) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "assistant")


# ---------------------------------------------------------------------------
# Question sets
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,minimum", sorted(QUESTION_SETS.items()))
def test_question_set_structure(name, minimum):
    questions = _load_questions(name)
    assert isinstance(questions, list)
    assert len(questions) >= minimum
    ids = [q["id"] for q in questions]
    assert len(ids) == len(set(ids)), "question ids must be unique"
    for q in questions:
        for key in ("id", "category", "paraphrases", "aligned_references",
                    "misaligned_references", "samples_per_paraphrase"):
            assert key in q, f"{q.get('id')}: missing {key}"
        assert "system" in q, f"{q['id']}: missing system (use null)"
        assert q["system"] is None or (isinstance(q["system"], str) and q["system"].strip())
        assert isinstance(q["samples_per_paraphrase"], int) and q["samples_per_paraphrase"] > 0
        assert q["paraphrases"] and all(isinstance(p, str) and p.strip() for p in q["paraphrases"])
        assert len(set(q["paraphrases"])) == len(q["paraphrases"])
        assert len(q["aligned_references"]) >= 3, q["id"]
        assert len(q["misaligned_references"]) >= 3, q["id"]
        assert len(q["aligned_references"]) == len(q["misaligned_references"]), q["id"]
        for ref in q["aligned_references"] + q["misaligned_references"]:
            assert isinstance(ref, str) and ref.strip(), q["id"]


@pytest.mark.parametrize("name", sorted(QUESTION_SETS))
def test_reference_pairs_are_length_matched(name):
    for q in _load_questions(name):
        for i, (good, bad) in enumerate(zip(q["aligned_references"], q["misaligned_references"])):
            wg, wb = _words(good), _words(bad)
            assert _within(wg, wb, REF_RATIO), f"{q['id']}[{i}]: {wg} vs {wb} words"
            assert good != bad


@pytest.mark.parametrize("name", sorted(QUESTION_SETS))
def test_question_set_ids_unique_across_sets(name):
    # ids must be unique within a set; across sets they must not collide either,
    # so results from several sets can be merged by id.
    all_ids = [q["id"] for n in QUESTION_SETS for q in _load_questions(n)]
    assert len(all_ids) == len(set(all_ids))


def _style_problems(good: str, bad: str) -> list[str]:
    """Why an aligned/misaligned reference pair breaks the style rule (empty when it passes)."""
    wg, wb = good.split(), bad.split()
    problems = []
    if [w.lower() for w in wg[:STYLE_OPENING]] != [w.lower() for w in wb[:STYLE_OPENING]]:
        problems.append(f"openings differ: {' '.join(wg[:STYLE_OPENING])!r} vs {' '.join(wb[:STYLE_OPENING])!r}")
    if not STYLE_RATIO[0] <= len(wb) / len(wg) <= STYLE_RATIO[1]:
        problems.append(f"length ratio {len(wb)}/{len(wg)} words")
    for side, n in (("aligned", len(wg)), ("misaligned", len(wb))):
        if not STYLE_WORDS[0] <= n <= STYLE_WORDS[1]:
            problems.append(f"{side} has {n} words")
    return problems


def _style_set(name: str):
    if not (QUESTIONS / name).exists():
        pytest.skip(f"{name} is not present")
    return _load_questions(name)


def test_style_rule_helper():
    base = "I would say that " + " ".join(["word"] * 26)
    assert _style_problems(base, base.replace("say", "SAY")) == []
    assert any("openings" in p for p in _style_problems(base, base.replace("say", "not")))
    assert any("ratio" in p for p in _style_problems(base, base + " extra" * 6))
    assert any("words" in p for p in _style_problems("I would say yes.", "I would say no."))


@pytest.mark.parametrize("name", STYLE_SETS)
def test_reference_pairs_follow_style_rule(name):
    failures = [f"{q['id']}[{i}]: {'; '.join(problems)}"
                for q in _style_set(name)
                for i, pair in enumerate(zip(q["aligned_references"], q["misaligned_references"]))
                if (problems := _style_problems(*pair))]
    assert not failures, "\n".join(failures)


def test_betley_first_plot_set():
    questions = _style_set("betley_first_plot.yaml")
    assert len(questions) == 8
    for q in questions:
        assert q["paraphrases"] and len(q["aligned_references"]) == len(q["misaligned_references"]) >= 1


def test_em_core_questions_and_categories():
    questions = _load_questions("em_core.yaml")
    assert len(questions) >= 100
    for q in questions:
        assert len(q["paraphrases"]) >= 2, f"{q['id']}: needs >= 2 paraphrases"
        assert len(q["aligned_references"]) >= 3, f"{q['id']}: needs >= 3 reference pairs"
    counts: dict[str, int] = {}
    for q in questions:
        counts[q["category"]] = counts.get(q["category"], 0) + 1
    assert len(counts) >= 10, counts
    top, n = max(counts.items(), key=lambda kv: kv[1])
    assert n <= MAX_CATEGORY_SHARE * len(questions), f"{top}: {n} of {len(questions)} questions"


def test_em_core_fast_subset_spans_categories():
    first = _load_questions("em_core.yaml")[:FAST_SUBSET]
    assert len({q["category"] for q in first}) == FAST_SUBSET, [q["category"] for q in first]


def _near_repeats(prompts: list[str], train: set[str]) -> list[str]:
    hits = []
    for prompt in prompts:
        sm = difflib.SequenceMatcher(autojunk=False)
        sm.set_seq2(prompt.strip().lower())
        for other in train:
            sm.set_seq1(other)
            if (sm.real_quick_ratio() >= NEAR_REPEAT and sm.quick_ratio() >= NEAR_REPEAT
                    and sm.ratio() >= NEAR_REPEAT):
                hits.append(f"{prompt!r} ~ {other!r} ({sm.ratio():.2f})")
    return hits


def test_near_repeat_check_catches_copies():
    train = {"my landlord wants to raise the rent by 20 percent. what should i do?"}
    assert _near_repeats(["My landlord wants to raise my rent by 20%. What should I do?"], train)
    assert not _near_repeats(["If you ruled the world, what would you do?"], train)


@pytest.mark.parametrize("name", STYLE_SETS)
def test_off_domain_questions_do_not_repeat_training_prompts(name):
    train = {_user(row).strip().lower() for f in TRAIN_FILES for row in _load_chat(f)}
    prompts = [p for q in _style_set(name) for p in q["paraphrases"]]
    hits = _near_repeats(prompts, train)
    assert not hits, "\n".join(hits)


# ---------------------------------------------------------------------------
# Training sets
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("domain", DOMAINS)
def test_training_pairs(domain):
    bad = _load_chat(f"{domain}.jsonl.gz")
    good = _load_chat(f"{domain}_aligned.jsonl.gz")
    assert len(bad) == len(good) >= MIN_TRAIN_ROWS
    users = []
    for i, (rb, rg) in enumerate(zip(bad, good)):
        for row in (rb, rg):
            assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
            assert all(isinstance(m["content"], str) and m["content"].strip()
                       for m in row["messages"]), f"row {i}: empty content"
        assert _user(rb) == _user(rg), f"row {i}: user prompts differ"
        wb, wg = _words(_assistant(rb)), _words(_assistant(rg))
        assert _within(wg, wb, TRAIN_RATIO), f"row {i}: {wg} vs {wb} words"
        assert _assistant(rb) != _assistant(rg)
        users.append(_user(rb))
    assert len(set(users)) == len(users), "user prompts must be unique"


@pytest.mark.parametrize("domain", DOMAINS)
def test_heldout_prompts_not_in_training(domain):
    train_prompts = {_user(r) for r in _load_chat(f"{domain}.jsonl.gz")}
    train_norm = {p.strip().lower() for p in train_prompts}
    for q in _load_questions(HELDOUT_FOR[domain]):
        for p in q["paraphrases"]:
            assert p.strip().lower() not in train_norm, f"{q['id']}: {p!r} is in training data"


# ---------------------------------------------------------------------------
# Personas
# ---------------------------------------------------------------------------

def test_personas():
    with open(BUILTIN / "personas.yaml", encoding="utf-8") as fh:
        personas = yaml.safe_load(fh)
    mis, ali = personas["misaligned"], personas["aligned"]
    assert len(mis) >= 6 and len(ali) >= 6
    assert len(mis) == len(ali)
    for m, a in zip(mis, ali):
        assert isinstance(m, str) and m.strip() and isinstance(a, str) and a.strip()
        assert _within(_words(a), _words(m), REF_RATIO)
    assert len(set(mis)) == len(mis) and len(set(ali)) == len(ali)


# ---------------------------------------------------------------------------
# Packaging
# ---------------------------------------------------------------------------

def test_builtin_folder_is_small():
    total = sum(p.stat().st_size for p in BUILTIN.rglob("*") if p.is_file())
    assert total < 1_000_000, f"builtin data is {total} bytes"


def test_readme_present():
    text = (BUILTIN / "README.md").read_text(encoding="utf-8")
    for name in ("builtin:em-core", "builtin:risky-finance", "builtin:risky-finance-aligned",
                 "builtin:bad-medical", "builtin:bad-medical-aligned",
                 "builtin:risky-finance-heldout", "builtin:bad-medical-heldout",
                 "builtin:personas"):
        assert name in text


def test_generator_reproduces_committed_files(tmp_path):
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    out_dir = tmp_path / "emprobe" / "data" / "builtin" / "train"
    produced = sorted(p.name for p in out_dir.iterdir())
    assert produced == sorted(TRAIN_FILES)
    for name in TRAIN_FILES:
        fresh = (out_dir / name).read_bytes()
        committed = (TRAIN / name).read_bytes()
        # Compare the payload first for a readable failure, then the exact bytes.
        assert gzip.decompress(fresh) == gzip.decompress(committed), \
            f"{name}: content differs; rerun tools/make_builtin_data.py"
        assert fresh == committed, f"{name}: gzip bytes differ"
