"""A run killed with SIGKILL mid-training and resumed reproduces the uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from emprobe.finetuning import finetune, load_run
from emprobe.finetuning.testing import tiny_config

KILLER = textwrap.dedent("""
    import json, os, signal, sys
    from transformers import TrainerCallback
    from emprobe.finetuning import FinetuneConfig, finetune

    class KillAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    finetune(FinetuneConfig.from_dict(json.loads(sys.argv[1])), callbacks=[KillAt()])
""")

SETTINGS = dict(max_steps=8, save_steps=[0, 2, 4, 6, 8], lora_dropout=0.1, schedule="cosine", warmup_steps=2)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, tiny_model_dir):
    ref = finetune(tiny_config(tiny_model_dir, tmp_path / "ref", **SETTINGS), log=lambda m: None)

    cfg = tiny_config(tiny_model_dir, tmp_path / "killed", **SETTINGS)
    proc = subprocess.run([sys.executable, "-c", KILLER, json.dumps(cfg.to_dict()), "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    killed = load_run(cfg.out)
    assert not killed.complete and [c.step for c in killed.checkpoints()] == [0, 2, 4]
    assert [p.name for p in (killed.path / "state").iterdir()] == ["checkpoint-4"]  # latest state only
    assert max(r["step"] for r in killed.train_log()) == 4  # killed during step 5, after its update

    with pytest.raises(Exception, match="holds a run; pass `resume`"):
        finetune(cfg)
    resumed = finetune(cfg.replace(resume=True), log=lambda m: None)
    assert resumed.complete and resumed.manifest["resumed_from"] == [4]
    a, b = ref.train_log(), resumed.train_log()
    assert [r["step"] for r in b] == list(range(1, 9))
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-4), x["step"]
        assert y["learning_rate"] == pytest.approx(x["learning_rate"])
    assert len({round(r["loss"], 3) for r in a}) > 4  # the losses actually move, so the match means something
    for x, y in zip(ref.checkpoints(), resumed.checkpoints()):
        assert x.step == y.step and y.val_loss == pytest.approx(x.val_loss, abs=1e-4)
    assert sorted(p.name for p in resumed.path.iterdir()) == ["checkpoints", "run.json", "train_log.jsonl"]
