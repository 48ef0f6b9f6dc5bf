"""The CLI verbs: `emprobe finetune --model ... --data ... --out ...`, `sweep`, `show`, and one-line errors."""

from __future__ import annotations

import pytest
import yaml

from emprobe.cli import main
from emprobe.finetune import load_run


def tiny_args(model, out, *extra):
    return ["finetune", "--model", str(model), "--data", "builtin:risky-finance", "--out", str(out),
            "--max-steps", "2", "--save-steps", "0,1", "--batch-size", "2", "--max-length", "96",
            "--val-max-examples", "4", "--lr", "1e-2", "--lora-r", "4", "--threads", "1", "--no-progress", *extra]


def test_cli_trains_shows_and_resumes(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    main(tiny_args(tiny_model_dir, out, "--schedule", "constant", "--warmup-steps", "1"))
    run = load_run(out)
    assert run.complete and [c.step for c in run.checkpoints()] == [0, 1, 2]
    assert run.settings["schedule"] == "constant" and run.settings["lora_r"] == 4
    assert "status complete" in capsys.readouterr().out
    main(["finetune", "show", str(out)])
    shown = capsys.readouterr().out
    assert "step-000002" in shown and f"{run.checkpoint(2).val_loss:.4f}" in shown
    main(["finetune", "--out", str(out), "--resume"])  # settings come from run.json
    assert "run already complete" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--max-steps", "3", "--save-steps", "0,5"], "error: --save-steps 5 beyond --max-steps 3"),
    (["--max-length", "20"], "error: --max-length 20 is shorter than"),
    (["--schedule", "step"], "error: unknown --schedule 'step'"),
])
def test_cli_errors_are_one_line(tmp_path, tiny_model_dir, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        main(tiny_args(tiny_model_dir, tmp_path / "run", *extra))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message)


def test_cli_refuses_non_empty_out(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(tiny_args(tiny_model_dir, tmp_path / "run"))
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err


def test_cli_sweep(tmp_path, tiny_model_dir, capsys):
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({
        "out": str(tmp_path / "sw"),
        "base": {"model": str(tiny_model_dir), "data": "builtin:bad-medical", "max_steps": 1, "batch_size": 2,
                 "max_length": 96, "val_max_examples": 2, "lora_r": 2, "save_steps": [0, 1]},
        "grid": {"seed": [0, 1]}}))
    main(["finetune", "sweep", str(f), "--threads", "1", "--no-progress"])
    assert "2 complete" in capsys.readouterr().out
    main(["finetune", "sweep", str(f), "--dry-run"])
    assert "2 skipped" in capsys.readouterr().out
    assert load_run(tmp_path / "sw" / "seed-1").settings["seed"] == 1
