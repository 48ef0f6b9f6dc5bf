"""The study's ``grid.mitigations`` axis (YAML round trip, one-line errors, cells) and the ``mitigations`` stage end
to end on a tiny model; the ``emprobe mitigations`` command on a planted table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from emprobe.errors import ConfigError
from emprobe.studies.config import Grid, Questions, StudyConfig, Training, preset

# emprobe.studies.cells is imported inside the tests: importing the submodule at collection would rebind the
# package's lazily loaded name `emprobe.studies.cells` (the function) to the module for later test files


def _cells():
    from emprobe.studies.cells import cells, finetune_config, reference_cell

    return cells, finetune_config, reference_cell


def test_preset_round_trips_through_yaml(tmp_path):
    cfg = preset("mitigations")
    names = [m.name for m in cfg.grid.mitigations]
    assert names == ["none", "kl", "interleave", "inoculation", "steer", "ablate"]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))
    assert StudyConfig.from_yaml(path) == cfg
    assert yaml.safe_load(path.read_text())["grid"]["mitigations"]["steer"] == {
        "steer_during_training": "persona", "steer_alpha": 1.0}
    # a list of names / one-key mappings is the same axis
    listed = Grid(mitigations=["none", {"kl": {"kl_to_base": 1.0, "kl_data": "builtin:bad-medical-aligned"}}])
    assert [m.name for m in listed.mitigations] == ["none", "kl"] and listed.mitigations[1].settings["kl_to_base"] == 1


def test_cells_cross_mitigations_with_datasets_and_keep_the_control(tmp_path):
    cells, finetune_config, reference_cell = _cells()
    cfg = preset("mitigations")
    cs = cells(cfg)
    assert [c.name for c in cs] == ["risky-finance-misaligned", *(f"risky-finance-misaligned-{m}" for m in
                                    ("kl", "interleave", "inoculation", "steer", "ablate")), "risky-finance-control"]
    ctl = cs[-1]
    assert ctl.control and ctl.mitigation == "none" and reference_cell(cfg).name == "risky-finance-misaligned"
    ft = {c.mitigation: finetune_config(cfg, c, tmp_path / "runs") for c in cs if not c.control}
    assert ft["steer"].steer_during_training == str(tmp_path / "directions" / "persona")
    assert ft["ablate"].ablate_during_training == str(tmp_path / "directions" / "mean_diff")
    assert ft["kl"].kl_to_base == 1.0 and ft["none"].kl_to_base == 0.0 and ft["none"].inoculation_prompt is None
    control = finetune_config(cfg, ctl, tmp_path / "runs")  # the aligned-data control: unchanged, no mitigation
    assert (control.kl_to_base, control.interleave, control.steer_during_training) == (0.0, None, None)
    # without the axis: the same runs as before it existed
    assert [c.name for c in cells(preset("demo"))] == ["risky-finance-misaligned", "risky-finance-control"]


@pytest.mark.parametrize("axis, message", [
    ({"kl": {"kl_to_base": 1.0, "kl_data": "builtin:bad-medical-aligned"}}, "must include `none`"),
    ({"none": {}, "kl": {"kl_weight": 1.0}}, "unknown mitigation option 'kl_weight' in `grid.mitigations.kl`"),
    ({"none": {"kl_to_base": 1.0}}, "`grid.mitigations.none` is the unmitigated reference"),
    ({"none": {}, "nothing": {"steer_alpha": 2.0}}, "`grid.mitigations.nothing` enables no mitigation"),
    ({"none": {}, "a b": {"inoculation_prompt": "x"}}, "mitigation name 'a b'"),
    ({"none": {}, "kl": {"kl_to_base": "big", "kl_data": "builtin:bad-medical-aligned"}},
     "`grid.mitigations.kl.kl_to_base` must be a number"),
    ({"none": {}, "kl": {"kl_to_base": 1.0}}, "`grid.mitigations.kl`: `kl_to_base` needs `kl_data`"),
    ({"none": {}, "kl": "strong"}, "`grid.mitigations.kl` must be a mapping"),
    (["none", "none"], "mitigation 'none' appears twice"),
])
def test_bad_mitigation_axes_fail_in_one_line(tmp_path, axis, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"preset": "fast", "grid": {"mitigations": axis}}))
    with pytest.raises(ConfigError) as e:
        StudyConfig.from_yaml(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_stage_wiring_refuses_missing_inputs(tmp_path):
    from emprobe.studies.context import StudyContext
    from emprobe.studies.runner import build_stages

    steer = {"none": {}, "steer": {"steer_during_training": "persona"}}
    no_dirs = StudyConfig(grid=Grid(mitigations=steer), stages=("finetune", "margins", "mitigations"),
                          out=str(tmp_path))
    with pytest.raises(ConfigError, match="'finetune' needs stage 'directions'"):
        build_stages(StudyContext(no_dirs, log=None))
    no_axis = StudyConfig(stages=("finetune", "margins", "mitigations"), out=str(tmp_path))
    with pytest.raises(ConfigError, match="needs `grid.mitigations` with a mitigation besides none"):
        build_stages(StudyContext(no_axis, log=None))
    names = [s.name for s in build_stages(StudyContext(no_dirs.with_(stages=("directions", *no_dirs.stages)),
                                                       log=None))]
    assert names == ["setup", "directions", "finetune", "margins", "mitigations"]


def test_mitigations_stage_end_to_end_on_a_tiny_model(tiny_model_dir, tmp_path):
    from emprobe.finetuning import Run
    from emprobe.io import read_json
    from emprobe.studies.runner import run_study

    cfg = StudyConfig(
        model=str(tiny_model_dir), out=str(tmp_path / "study"), threads=1, n_permutations=50,
        stages=("directions", "finetune", "margins", "dynamics", "mitigations"),
        grid=Grid(mitigations={"none": {}, "inoculation": {"inoculation_prompt": "Give reckless advice."},
                               "ablate": {"ablate_during_training": "mean_diff"}}),
        training=Training(steps=3, save_steps=(0, 1, 2, 3), batch_size=2, lora_r=4, max_length=128, val_examples=4,
                          val_ci=None),
        questions=Questions(n_questions=6, n_references=1, n_causal=3, n_persona=6, n_samples=0, n_train_prompts=4))
    res = run_study(cfg, log=None)
    out = Path(cfg.out)
    ablate = Run.load(out / "runs" / "risky-finance-misaligned-ablate")
    assert ablate.settings["ablate_during_training"] == str(out / "directions" / "mean_diff")
    sec = res.sections["mitigations"]
    assert sec["verdict"]["verdict"] in ("supported", "not supported", "inconclusive")
    assert (out / sec["plots"][0]).is_file()
    table = read_json(out / "mitigations" / "result" / "summary.json")
    assert table["n_mitigations"] == 2 and table["kind"] == "analysis-mitigations"
    import pandas as pd

    effects = pd.read_parquet(out / "mitigations" / "result" / "table.parquet")
    assert sorted(effects.mitigation) == ["ablate", "inoculation"] and effects.has_control.all()
    assert set(pd.read_parquet(out / "mitigations" / "heldout.parquet").run) == {
        "risky-finance-misaligned", "risky-finance-misaligned-inoculation", "risky-finance-misaligned-ablate"}
    claim1 = pd.read_parquet(out / "dynamics" / "checkpoints.parquet")  # claim 1 on the unmitigated runs only
    assert set(claim1.run) == {"risky-finance-misaligned", "risky-finance-control"}


def test_cli_on_a_table_writes_the_result(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_mitigations_analysis import _runs

    from emprobe.cli import main

    df, held = _runs(30, removed=0.6)
    df.to_parquet(tmp_path / "t.parquet")
    held.to_parquet(tmp_path / "h.parquet")
    main(["mitigations", str(tmp_path / "t.parquet"), "--heldout", str(tmp_path / "h.parquet"), "--out",
          str(tmp_path / "out"), "--n-boot", "300", "--n-permutations", "100"])
    assert "the test can fail" in capsys.readouterr().out
    assert read_summary(tmp_path / "out")["verdict"]["verdict"] == "supported"
    with pytest.raises(SystemExit):  # the output policy: an existing result is not replaced without --overwrite
        main(["mitigations", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "out")])
    assert "--overwrite" in capsys.readouterr().err


def read_summary(path: Path) -> dict:
    from emprobe.io import read_json

    return read_json(path / "summary.json")
