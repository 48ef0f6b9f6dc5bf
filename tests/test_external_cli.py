"""The three commands on results from elsewhere: ``emprobe dynamics --results``, ``emprobe priors --target --prompts``
and ``emprobe consistency --results`` print verdicts with numbers, controls and CIs; bad inputs give one line."""

import json

import pytest

from emprobe.cli import main

EMG = "em-generalization"


def _run(capsys, argv):
    main(argv)
    return capsys.readouterr().out


def test_dynamics_results_glob(external, tmp_path, capsys):
    out = _run(capsys, ["dynamics", "--results", str(external / EMG / "results/claim1_schedules_fpq/*.json"),
                        "--out", str(tmp_path / "d")])
    assert "Claim 1 is" in out and "TOST" in out and "Bonferroni" in out and "near-identical schedules" in out
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["verdict"]["verdict"] in ("supported", "not supported", "inconclusive")
    assert summary["n_runs"] == 35 and (tmp_path / "d" / "closest_pairs.parquet").is_file()


def test_dynamics_results_as_shell_expanded_files(external, tmp_path, capsys):
    files = sorted(str(p) for p in (external / EMG / "results/claim1_schedules_fpq").glob("*cosine_5_*.json"))
    files += sorted(str(p) for p in (external / EMG / "results/claim1_schedules_fpq").glob("*cosine_30_*.json"))
    out = _run(capsys, ["dynamics", "--results", *files, "--score", "harmless", "--out", str(tmp_path / "d")])
    assert "8 runs, 2 schedules" in out


def test_consistency_general200(external, tmp_path, capsys):
    files = sorted(str(p) for p in (external / EMG / "results/general200").glob("*.json"))
    out = _run(capsys, ["consistency", "--results", *files, "--n-boot", "500", "--out", str(tmp_path / "c")])
    assert "Spearman" in out and "within-category r" in out and "finance vs medical" in out
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["n_pairs"] == 3 and summary["verdict"]["verdict"] in ("supported", "not supported", "inconclusive")


def test_priors_external_target_with_a_model(external, tmp_path, capsys):
    coder = "results/claim2_hbp/eval_Qwen2.5-Coder-32B-Instruct_finance_all_resp_1e-05_hbp.json"
    summ = json.loads((external / EMG / coder).read_text())["summ_by_q"]
    keep = {q: v for q, v in summ.items() if q.startswith(("offensive_jokes", "violence")) and int(q[-3:]) <= 15}
    target = tmp_path / "eval_sub.json"
    target.write_text(json.dumps({"summ_by_q": keep}))
    out = _run(capsys, ["priors", "--target", f"{target}:harmless", "--prompts",
                        str(external / EMG / "evaluation/harmfulness_benchmark_prompts.jsonl"),
                        "--model", "smollm2-135m-instruct", "--n-permutations", "10", "--n-random", "1",
                        "--threads", "1", "--out", str(tmp_path / "p")])
    assert "Claim 2 is" in out and "category" in out and "95% CI" in out and "permutation p" in out
    assert (tmp_path / "p-activations" / "manifest.json").is_file()  # reusable with --features
    assert (tmp_path / "p" / "summary.json").is_file()


@pytest.mark.parametrize("argv_tail, message", [
    (["consistency", "--results"], "no 'summ_by_q' field"),
    (["dynamics", "--results"], "no 'summ_by_q' field"),
])
def test_bad_inputs_print_one_line(tmp_path, capsys, argv_tail, message):
    bad = tmp_path / "eval_bad.json"
    bad.write_text(json.dumps({"agg": {}}))
    with pytest.raises(SystemExit) as e:
        main([*argv_tail, str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_priors_without_features_or_prompts_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["priors", "--target", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")])
    assert "--features is required" in capsys.readouterr().err
