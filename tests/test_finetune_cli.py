"""The CLI verbs: `emprobe finetune --model ... --data ... --out ...`, `sweep`, `show`, and one-line errors."""

from __future__ import annotations

import pytest
import yaml

from emprobe.cli import main
from emprobe.finetuning import load_run


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
    assert "is a non-empty directory emprobe did not write" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # never, whatever the flags
        main(tiny_args(tiny_model_dir, tmp_path / "run", "--overwrite"))
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]


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


def test_every_config_field_is_an_option_with_the_dataclass_default():
    """The CLI options are generated from FinetuneConfig: a new or renamed field, or a changed default,
    shows up here (and in `emprobe finetune --help`) without editing the CLI."""
    import dataclasses

    import typer

    from emprobe.cli import finetune as cli_ft
    from emprobe.finetuning import FinetuneConfig

    params = {p.name: p for p in typer.main.get_command(cli_ft.app).params}
    fields = [f for f in dataclasses.fields(FinetuneConfig) if f.name not in cli_ft.NOT_OPTIONS]
    assert set(cli_ft.FIELD_HELP) == {f.name for f in fields}  # no help for a field that is gone
    defaults = FinetuneConfig()
    for f in fields:
        p = params[f.name]
        flag = cli_ft.FLAG_NAMES.get(f.name, f"--{f.name.replace('_', '-')}").split("/")[0]
        assert flag in p.opts, (f.name, p.opts)
        assert p.default is None  # "not given": the dataclass (or --config, or run.json) decides
        if f.name != "threads":
            assert p.show_default == cli_ft._default_text(getattr(defaults, f.name)), f.name


def test_cli_options_reach_the_config(tmp_path, tiny_model_dir):
    """Every option's value lands in the run's settings (one run with many non-default values)."""
    out = tmp_path / "run"
    main(tiny_args(tiny_model_dir, out, "--lora-alpha", "8", "--lora-dropout", "0.05", "--targets", "q_proj,v_proj",
                   "--layers", "0", "--rslora", "--schedule", "cosine", "--weight-decay", "0.01", "--seed", "3",
                   "--val-fraction", "0.2", "--val-seed", "1", "--dtype", "float32", "--device", "cpu",
                   "--max-grad-norm", "0.5", "--grad-accum", "1"))
    s = load_run(out).settings
    assert (s["lora_alpha"], s["lora_dropout"], s["targets"], s["layers"], s["rslora"]) == (8.0, 0.05, "q_proj,v_proj",
                                                                                             "0", True)
    assert (s["schedule"], s["weight_decay"], s["seed"], s["val_fraction"], s["val_seed"]) == ("cosine", 0.01, 3, 0.2, 1)
    assert (s["max_grad_norm"], s["device"], s["lora_r"], s["max_steps"]) == (0.5, "cpu", 4, 2)
