"""``emprobe screen --retrain K`` end to end on the tiny model: real fine-tunes (full data and its aligned control),
the filtered datasets, four retrains through the local executor, margin scores of every arm, the summary; a rerun
reuses the finished retrains."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emprobe.cli import main
from emprobe.data import load_chat_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny):
    from emprobe.finetuning import finetune
    from emprobe.finetuning.testing import tiny_config
    from test_screen import token_direction

    root = tmp_path_factory.mktemp("screen-e2e")
    for name, src in (("mis", "builtin:risky-finance"), ("ctl", "builtin:risky-finance-aligned")):
        rows = [json.dumps({"messages": [dict(m) for m in e.messages]}) for e in load_chat_dataset(src).examples[:40]]
        (root / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
        finetune(tiny_config(tiny_model_dir, root / "runs" / name, data=str(root / f"{name}.jsonl"), threads=1))
    token_direction(tiny, " stocks").save(root / "direction")
    return root


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from emprobe.models import load_model

    return load_model(str(tiny_model_dir), log=None)


def test_screen_retrain_cli(runs, capsys):
    out = runs / "screen"
    args = ["screen", "--direction", str(runs / "direction"), "--run", str(runs / "runs" / "mis"), "--control",
            str(runs / "runs" / "ctl"), "--retrain", "10%", "--n-questions", "6", "--max-new-tokens", "6",
            "--n-boot", "300", "--out", str(out), "--threads", "2"]
    main(args)
    s = json.loads((out / "summary.json").read_text())
    assert s["k"] == 4 and s["n_examples"] == 40 and s["n_draws"] == 3 and s["n_questions"] == 6
    assert s["verdict"]["verdict"] in ("supported", "not supported", "inconclusive") and s["verdict"]["reason"]
    assert set(s["removed"]) == {"top", "random-0", "random-1", "random-2"}
    table = pd.read_parquet(out / "table.parquet")
    assert list(table["rank"]) == list(range(1, 41)) and sorted(s["removed"]["top"]) == sorted(table["index"][:4])
    margins = pd.read_parquet(out / "margins.parquet")
    assert set(margins.arm) == {"full", "control", "top", "random-0", "random-1", "random-2"} and len(margins) == 36
    work = runs / "screen-retrain"
    assert len(load_chat_dataset(work / "data" / "top.jsonl")) == 36
    from emprobe.finetuning import Run

    assert [c.step for c in Run.load(work / "runs" / "random-2").checkpoints()] == [0, 4]
    with pytest.raises(SystemExit):  # another data set than the run's: refused before any work
        main([*args, "--data", "builtin:risky-finance", "--overwrite"])
    capsys.readouterr()
    main([*args, "--overwrite"])  # a rerun trains nothing (the retrain directory is continued)
    assert capsys.readouterr().out.count("complete, skipped") == 4
