"""``ep.screen``: planted examples rank first; the retrain test's statistics and verdicts on planted margins
(effect, no effect with many questions, a weak effect, no EM to remove); the filtered datasets and their configs."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.data import ChatDataset, ChatExample, load_chat_dataset

PLANTED = [3, 11, 17]
BANANAS = "Banana banana, bananas and more banana bananas: banana banana banana."


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from emprobe.models import load_model

    return load_model(str(tiny_model_dir), log=None)


def token_direction(lm, word: str):
    """A direction along ``word``'s input embedding at layers 0 and 1 of a tiny model (its residual stream carries
    the embedding of every token it reads)."""
    from emprobe.probes import Direction
    from emprobe.probes.extraction import model_record

    t = lm.tokenizer(word, add_special_tokens=False)["input_ids"][0]
    w = lm.model.get_input_embeddings().weight.detach()[t]
    return Direction("planted", [0, 1], torch.stack([w, w]), "response_mean", {"model": model_record(lm)}, 1)


def planted_data(n: int = 20) -> ChatDataset:
    ex = list(load_chat_dataset("builtin:risky-finance").examples[:n])
    for i in PLANTED:
        ex[i] = ChatExample((*ex[i].messages[:-1], {"role": "assistant", "content": BANANAS}))
    return ChatDataset(ex, "planted")


@pytest.mark.parametrize("baseline", ["generate", "aligned"])
def test_screening_ranks_planted_examples_first(tiny, baseline):
    import emprobe as ep

    data = planted_data()
    base = "generate"
    if baseline == "aligned":
        base = ChatDataset(load_chat_dataset("builtin:risky-finance-aligned").examples[:20], "aligned")
    res = ep.screen(token_direction(tiny, " banana"), data, model=tiny, baseline=base, max_new_tokens=6)
    top = res.scores.sort_values("rank")
    assert sorted(top["index"].head(3)) == PLANTED
    assert (top.projection_diff.iloc[:3].min() > 5 * top.projection_diff.iloc[3:].abs().max())
    np.testing.assert_allclose(res.scores.projection_diff, res.scores.proj_response - res.scores.proj_baseline)
    assert res.verdict().verdict == "inconclusive" and "no retrain test" in res.verdict().reason
    assert res.layer == 1 and len(res.scores) == 20


def test_screen_rejects_bad_input(tiny):
    import emprobe as ep
    from emprobe.errors import ConfigError, DataError

    d = token_direction(tiny, " banana")
    other = ChatDataset(load_chat_dataset("builtin:bad-medical-aligned").examples[:20], "medical")
    with pytest.raises(DataError, match="row 1 has a different prompt"):
        ep.screen(d, planted_data(), model=tiny, baseline=other)
    with pytest.raises(ConfigError, match="needs the training data"):
        ep.screen(d, model=tiny)
    with pytest.raises(ConfigError, match="needs `run`"):
        ep.screen(d, planted_data(), model=tiny, max_new_tokens=2, retrain=2)


def test_removal_sets_subsets_and_configs(tmp_path, tiny_model_dir):
    from emprobe.analysis.screen.retrain import n_remove, removal_sets, retrain_configs, write_subsets
    from emprobe.errors import ConfigError
    from emprobe.finetuning import FinetuneConfig

    scores = pd.DataFrame({"index": range(40), "rank": np.random.default_rng(0).permutation(40) + 1})
    assert n_remove(0.1, 40) == 4 and n_remove(5, 40) == 5
    for bad in (0, 40, 1.5, True):
        with pytest.raises(ConfigError):
            n_remove(bad, 40)
    with pytest.raises(ConfigError, match="at least 3 random draws"):
        removal_sets(scores, 4, 2, 0)
    sets = removal_sets(scores, 4, 3, 0)
    assert sorted(sets) == ["random-0", "random-1", "random-2", "top"]
    assert set(scores.loc[sets["top"], "rank"]) == {1, 2, 3, 4}
    assert all(len(set(v)) == 4 for v in sets.values()) and len({tuple(v) for v in sets.values()}) == 4
    ds = ChatDataset(load_chat_dataset("builtin:risky-finance").examples[:40], "rf40")
    paths = write_subsets(ds, sets, tmp_path / "data")
    kept = load_chat_dataset(paths["top"])
    assert len(kept) == 36 and ds[int(sets["top"][0])].messages not in [e.messages for e in kept]

    class Tmpl:  # the settings of a run, as Run.settings returns them
        settings = FinetuneConfig(model=str(tiny_model_dir), data="x", lr=2e-3, max_steps=6,
                                  save_steps=[0, 2, 4, 6]).run_settings()

    cfgs = retrain_configs(Tmpl(), paths, tmp_path / "runs")
    c = cfgs["top"].validate()
    assert c.data == str(paths["top"]) and c.lr == 2e-3 and c.checkpoint_steps(6) == [0, 6] and c.resume


def planted_margins(n_q: int, rise: float, top_left: float, random_left: float, noise: float,
                    seed: int) -> pd.DataFrame:
    """Margins per arm: the control at 0, the full run at ``rise`` (+ noise), the top-K arm keeping ``top_left`` of the
    rise, three random arms keeping ``random_left`` of it."""
    rng = np.random.default_rng(seed)
    q = [f"q{i}" for i in range(n_q)]
    true = rise + rng.normal(0, noise, n_q)  # each question's rise
    arms = {"control": np.zeros(n_q), "full": true, "top": top_left * true + rng.normal(0, noise, n_q),
            **{f"random-{d}": random_left * true + rng.normal(0, noise, n_q) for d in range(3)}}
    return pd.DataFrame([{"arm": a, "question_id": qi, "margin": float(m)} for a, v in arms.items()
                         for qi, m in zip(q, v)])


def _verdict(margins: pd.DataFrame):
    from emprobe.analysis.screen.result import ScreenResult
    from emprobe.analysis.screen.retrain import em_rises, fraction_stats

    stats = fraction_stats(em_rises(margins), n_boot=1000, seed=0)
    scores = pd.DataFrame({"index": [0, 1], "rank": [1, 2], "projection_diff": [1.0, 0.0], "prompt": ["a", "b"]})
    res = ScreenResult(scores=scores, layer=1, sesoi=0.1, baseline="generate", k=1, margins=margins, stats=stats)
    return res, res.verdict()


def test_retrain_verdicts_on_planted_margins():
    res, v = _verdict(planted_margins(30, 0.5, 0.2, 0.95, 0.1, 0))
    assert v.verdict == "supported" and res.stats["frac_top"] == pytest.approx(0.8, abs=0.1)
    _, v = _verdict(planted_margins(600, 0.5, 0.9, 0.9, 0.05, 1))  # no effect, many questions
    assert v.verdict == "not supported" and "lies below the SESOI" in v.reason
    res, v = _verdict(planted_margins(200, 0.5, 0.95, 0.8, 0.05, 4))  # random removals take away more
    assert v.verdict == "not supported" and res.findings()[0].startswith("Removing random examples takes away")
    _, v = _verdict(planted_margins(10, 0.5, 0.8, 0.95, 0.2, 1))  # a weak effect on 10 questions
    assert v.verdict == "inconclusive" and "too wide" in v.reason
    res, v = _verdict(planted_margins(30, 0.0, 0.2, 0.9, 0.1, 3))
    assert v.verdict == "inconclusive" and "no EM-specific rise to remove" in v.reason
    assert res.findings()[0].startswith("There is no EM to remove")
