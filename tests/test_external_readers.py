"""Readers of evaluations made elsewhere: the paper's em-generalization files, per-sample CSVs, emprobe score tables,
runs.yaml metadata, nulls and missing questions counted, bad files as one-line errors naming file and field."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import emprobe as ep
from emprobe.errors import DataError
from emprobe.evaluation.external import load_results, parse_name
from emprobe.evaluation.tables import ScoreTable
from emprobe.io import manifest

EMGEN = "em-generalization/results"


def test_claim1_schedule_runs_are_35_runs_by_24_questions(external):
    res = ep.load_results(external / EMGEN / "claim1_schedules_fpq")
    table, runs = res.table(), res.runs_table()
    assert len(res) == 35 and len(table) == 35 * 24 and len(res.questions) == 24
    assert res.counts() == {"n_runs": 35, "n_questions": 24, "n_rows": 840, "nulls": {}, "missing": 0}
    assert runs.schedule.nunique() == 9 and sorted(runs.lr.unique()) == [1e-5, 3e-5, 5e-5, 7e-5]
    assert (runs.n_sequences == 590).all() and runs.model.eq("Qwen2.5-32B-Instruct").all()
    assert 1.31 < runs.eval_loss.min() < 1.32 and 1.44 < runs.eval_loss.max() < 1.45
    assert (runs.eval_loss_se > 0).all() and runs.dataset.eq("finance").all()
    one = res[0]
    assert one.train_log is not None and len(one.train_log) == 332 and one.meta["max_steps"] == 332
    assert math.isclose(one.eval_loss, float(np.mean(one.seq_losses)), rel_tol=1e-6)
    assert set(res.available_scores()) == {"aligned", "harmless", "coherent"}


def test_file_names_give_schedule_lr_and_warmup():
    cyc = parse_name("eval_Qwen2.5-32B-Instruct_finance_all_resp_3e-05_mode-triangular2_base_lr-1e-05_max_lr-5e-05"
                     "_fpq.json")
    assert cyc["schedule"] == "cyclic_triangular2" and cyc["lr"] == 3e-5 and cyc["max_lr"] == 5e-5
    cos = parse_name("eval_Qwen2.5-32B-Instruct_finance_all_resp_cosine_with_restarts_80_5e-05_fpq.json")
    assert (cos["schedule"], cos["family"], cos["warmup"], cos["lr"]) == ("cosine_with_restarts_80",
                                                                          "cosine_with_restarts", 80, 5e-5)
    bare = parse_name("eval_Qwen2.5-Coder-32B-Instruct_medical_all_resp_1e-05_general200nano.json")
    assert (bare["dataset"], bare["lr"], bare["eval_set"]) == ("medical", 1e-5, "general200nano")
    assert parse_name("results.json") == {}


def test_claim2_and_general200_targets(external):
    hbp = load_results(external / EMGEN / "claim2_hbp")
    assert len(hbp) == 1 and len(hbp.table()) == 320
    assert hbp[0].scores.harmless.std() == pytest.approx(24.0, abs=0.1)
    gen = load_results(sorted((external / EMGEN / "general200").glob("*.json")))
    assert [r.meta["dataset"] for r in gen] == ["finance", "insecure", "medical"]
    assert gen.counts()["n_rows"] == 600 and len(gen.shared_questions("aligned")) == 200


def test_per_sample_csvs_give_the_clarifying_em_rates(external):
    from emprobe.evaluation import overall_em_rate
    from emprobe.evaluation.external.samples import EXTERNAL_EM, samples_table

    res = load_results(str(external / "clarifying_EM/responses/*.csv"))
    assert len(res) == 10 and res.counts()["n_rows"] == 240
    by = {r.run: r for r in res}
    em = {k: r.scores.em_rate.mean() for k, r in by.items()}
    assert em["responses_Qwen2.5-14B-Instruct-bad_medical_advice"] == pytest.approx(16.2, abs=0.06)
    assert em["responses_Qwen2.5-32B-Instruct-good_medical_advice"] == pytest.approx(0.1, abs=0.05)
    coder = by["eval_results_Qwen-Coder-Insecure"]
    assert coder.null_samples["aligned"] == 236  # CODE / REFUSAL answers: unscored, out of the denominator
    pooled = overall_em_rate(samples_table(coder.source), EXTERNAL_EM)
    assert 100 * pooled["em_rate"] == pytest.approx(8.3, abs=0.05) and pooled["n_scored"] == 964


def _emgen(path, summ, losses=(1.0, 1.2, 1.4)):
    path.write_text(json.dumps({"summ_by_q": summ, "eval_loss": {"avg_loss": None, "all_seq_losses": list(losses)}}))
    return path


def test_nulls_and_missing_questions_are_counted(tmp_path):
    a = _emgen(tmp_path / "eval_M_fin_all_resp_1e-05_fpq.json",
               {"q_1": {"aligned": 80.0, "coherent": 90}, "q_2": {"aligned": None, "coherent": 88},
                "q_3": {"aligned": 40, "coherent": None}}, losses=(1.0, None, 1.4))
    b = tmp_path / "b.csv"
    pd.DataFrame({"question_id": ["q_1"] * 3 + ["q_2"] * 2, "aligned": [10, 90, "REFUSAL", "", ""],
                  "coherent": [60, 90, 80, 70, 70]}).to_csv(b, index=False)
    res = load_results([a, b])
    ra, rb = res
    assert ra.nulls == {"aligned": 1, "coherent": 1}
    assert ra.eval_loss == pytest.approx(1.2) and ra.meta["seq_losses_dropped"] == 1
    assert rb.nulls["aligned"] == 1 and rb.null_samples["aligned"] == 3  # q_2 has no scored answer
    assert rb.scores.set_index("question_id").em_rate["q_1"] == pytest.approx(50.0)  # 1 of 2 scored
    c = res.counts()
    assert c["missing"] == 1 and c["nulls"]["aligned"] == 2 and c["n_rows"] == 5
    assert res.shared_questions("aligned") == ["q_1"]


def test_runs_yaml_sets_metadata_and_trajectories(tmp_path):
    for step, loss in ((10, 2.0), (20, 1.5)):
        _emgen(tmp_path / f"eval_s{step}.json", {"q_1": {"aligned": 50 + step}, "q_2": {"aligned": 60}},
               losses=(loss, loss))
    (tmp_path / "runs.yaml").write_text(
        "defaults: {model: M, dataset: d}\nruns:\n"
        "  - {file: eval_s10.json, run: r1, step: 10, schedule: cosine, lr: 1e-4, seed: 3}\n"
        "  - {file: eval_s20.json, run: r1, step: 20, schedule: cosine, lr: 1e-4, seed: 3}\n")
    res = load_results(tmp_path)
    assert [r.name for r in res] == ["r1@10", "r1@20"]
    runs = res.runs_table()
    assert runs.schedule.eq("cosine").all() and runs.seed.eq(3).all() and runs.model.eq("M").all()
    assert list(runs.eval_loss) == [2.0, 1.5]
    assert len(load_results(tmp_path / "runs.yaml")) == 2  # the manifest alone names its files


def test_emprobe_score_tables(tmp_path):
    scores = pd.DataFrame({"question_id": ["a", "a", "b", "b"], "aligned": [10.0, 90.0, 20.0, None],
                           "coherent": [80.0, 80.0, 90.0, 90.0]})
    ScoreTable(scores, pd.DataFrame({"question_id": ["a", "b"]}),
               manifest("score_table", metric="judge", model={"name": "smollm2"})).save(tmp_path / "judged")
    summary = pd.DataFrame({"question_id": ["a", "b"], "margin": [0.3, -0.1]})
    ScoreTable(scores.iloc[:0], summary, manifest("score_table", metric="margin", model={"name": "m"}, step=5)
               ).save(tmp_path / "margins")
    res = load_results([tmp_path / "judged", tmp_path / "margins"])
    j, m = res
    assert j.format == "emprobe" and j.scores.em_rate.tolist() == [50.0, 100.0]
    assert j.null_samples == {} and j.nulls["aligned"] == 0
    assert m.step == 5 and m.scores.margin.tolist() == [0.3, -0.1] and m.eval_loss is None


@pytest.mark.parametrize("content, field", [
    ({"agg": {}}, "summ_by_q"),
    ({"summ_by_q": {"q": {"aligned": "high"}}}, "summ_by_q['q'].aligned"),
    ({"summ_by_q": {"q": {"aligned": 1}}, "eval_loss": {"avg_loss": 1, "all_seq_losses": "x"}},
     "eval_loss.all_seq_losses"),
    ({"summ_by_q": []}, "summ_by_q"),
])
def test_bad_json_is_one_line_naming_file_and_field(tmp_path, content, field):
    p = tmp_path / "eval_bad.json"
    p.write_text(json.dumps(content))
    with pytest.raises(DataError) as e:
        load_results(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and field in msg


def test_bad_csv_yaml_and_paths_are_one_line(tmp_path):
    p = tmp_path / "x.csv"
    pd.DataFrame({"question_id": ["a"], "coherent": [1]}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"x\.csv: column 'aligned' missing"):
        load_results(p)
    y = tmp_path / "runs.yaml"
    y.write_text("runs:\n  - {file: x.csv, lr: fast}\n")
    with pytest.raises(DataError, match=r"runs\[0\]\.lr is 'fast'"):
        load_results(y)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(DataError, match="matches no file"):
        load_results(str(tmp_path / "none_*.json"))
    with pytest.raises(DataError, match="not a results file"):
        load_results(y.with_name("notes.txt").write_text("x") and y.with_name("notes.txt"))
