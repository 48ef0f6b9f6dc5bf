"""`emprobe priors` on constructed stores (planted signal) and on other people's judged answer CSVs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.analysis.priors_study import load_target, predict_priors
from emprobe.errors import DataError
from emprobe.probes import ActivationStore, Direction

D = 48


def _store(x: np.ndarray, qids: list[str], name: str) -> ActivationStore:
    records = [{"uid": f"{q}/{i}", "question_id": q, "label": None, "pair": None} for i, q in enumerate(qids)]
    model = {"name": name, "fingerprint": {"architecture": "Toy", "n_layers": x.shape[1], "d_model": D}}
    return ActivationStore({"last_prompt": torch.tensor(x, dtype=torch.float32)}, list(range(x.shape[1])), records,
                           {"model": model})


def test_planted_prior_is_found_with_controls(tmp_path):
    rng = np.random.default_rng(0)
    n_q = 30
    qids = [f"q{i}" for i in range(n_q) for _ in range(2)]  # 2 paraphrases each
    v = rng.standard_normal(D)
    v /= np.linalg.norm(v)
    latent = rng.standard_normal(n_q)
    x = rng.standard_normal((2 * n_q, 2, D))
    x[:, 1] += 3 * np.repeat(latent, 2)[:, None] * v  # layer 1 carries the question's susceptibility
    target = pd.DataFrame({"question_id": [f"q{i}" for i in range(n_q)],
                           "target": latent + 0.2 * rng.standard_normal(n_q), "target_kind": "margin"})
    stores = {"instruct": _store(x, qids, "instruct"), "noise": _store(rng.standard_normal(x.shape), qids, "noise")}
    direction = Direction("mean_diff", [0, 1], torch.tensor(np.stack([np.zeros(D) + 1e-3, v])), "last_prompt",
                          {"model": stores["instruct"].model}, best_layer=1)
    res = predict_priors(stores, target, layers="1", direction=direction, n_permutations=500, pls_permutations=20,
                         n_random=20)
    t = res.table.set_index(["features", "method"])
    assert t.loc[("instruct", "ridge"), "spearman_rho"] > 0.7 and t.loc[("instruct", "ridge"), "p_permutation"] < 0.01
    assert t.loc[("noise", "ridge"), "p_permutation"] > 0.01
    assert t.loc[("instruct", "ridge"), "random_rho_95"] < t.loc[("instruct", "ridge"), "spearman_rho"]
    proj = res.table[res.table.method == "projection"].iloc[0]
    assert proj.spearman_rho > 0.9 and proj.p_permutation < 0.01
    assert "Spearman ρ" in res.findings[0] and "random features" in res.findings[1]
    out = res.save(tmp_path / "priors")
    assert (out / "plot.png").stat().st_size > 1000 and (out / "predictions.parquet").is_file()


def test_target_from_other_peoples_judged_csv(external):
    csv = external / "clarifying_EM" / "responses" / "responses_Qwen2.5-14B-Instruct-bad_medical_advice.csv"
    df = load_target(csv)
    assert df.target_kind.iloc[0] == "em_rate" and df.question_id.nunique() == len(df) >= 20
    raw = pd.read_csv(csv)
    q = df.set_index("question_id").target
    one = raw[raw.question_id == q.index[0]]
    scored = one.dropna(subset=["aligned", "coherent"])
    assert q.iloc[0] == pytest.approx(((scored.aligned < 30) & (scored.coherent > 50)).mean())
    base = external / "clarifying_EM" / "responses" / "responses_Qwen2.5-14B-Instruct_base.csv"
    rise = load_target(csv, baseline=base)
    assert rise.target_kind.iloc[0] == "em_rate_rise" and len(rise) == len(df)


def test_target_errors(tmp_path):
    with pytest.raises(DataError, match="no such score table"):
        load_target(tmp_path / "nothing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("question_id,answer\nq,a\n")
    with pytest.raises(DataError, match="lacks columns"):
        load_target(bad)
