"""Study configs: YAML and presets, the grid's runs with one aligned control per dataset, one-line errors."""

from __future__ import annotations

import pytest

from emprobe.errors import ConfigError
from emprobe.studies import PRESETS, StudyConfig, cells, preset
from emprobe.studies.cells import finetune_config, reference_cell

REPO_EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


def test_presets_differ_where_the_issue_says():
    demo, fast, paper = preset("demo"), preset("fast"), preset("paper")
    assert [c.name for c in cells(demo)] == ["risky-finance-misaligned", "risky-finance-control"]
    assert fast.training.checkpoints() == [0, 2, 4] and fast.questions.n_questions == 8
    runs = cells(paper)
    main = [c for c in runs if not c.control]
    assert len(main) == 2 * 3 * 2 * 3 and sum(c.control for c in runs) == 2  # datasets x schedules x lrs x seeds
    assert len(paper.grid.seeds) >= 3 and len({c.name for c in runs}) == len(runs)  # claim 1 sees run-to-run noise
    assert demo.grid.seeds == fast.grid.seeds == (0,)  # the demo and fast presets cost what they did
    assert {c.schedule for c in main} == {"constant", "cosine", "warmup-stable-decay"}
    assert len(paper.training.checkpoints()) >= 5 and paper.training.decay_fraction >= 0.5
    ref = reference_cell(paper)
    ctl = next(c for c in runs if c.control and c.dataset == ref.dataset)
    assert (ref.schedule, ref.lr, ref.seed, ref.dataset) == (ctl.schedule, ctl.lr, ctl.seed, ctl.dataset)


def test_schedules_of_the_paper_preset_really_differ():
    from emprobe.finetuning import lr_curve

    paper = preset("paper")
    curves = {}
    for cell in (c for c in cells(paper) if not c.control and c.lr == paper.grid.lrs[0]
                 and c.dataset == paper.datasets[0].name):
        cfg = finetune_config(paper, cell, REPO_EXAMPLES)
        curves[cell.schedule] = lr_curve(cfg, paper.training.steps)
    wsd, const = curves["warmup-stable-decay"], curves["constant"]
    differ = sum(abs(a - b) > 1e-9 for a, b in zip(wsd, const))
    assert differ >= paper.training.steps // 3  # the decay covers a third of the run or more


def test_yaml_examples_and_errors(tmp_path):
    cfg = StudyConfig.from_yaml(REPO_EXAMPLES / "study.yaml")
    assert len(cells(cfg)) == 14 and cfg.prior_kinds == {"instruct": "smollm2-135m-instruct"}
    organism = StudyConfig.from_yaml(REPO_EXAMPLES / "insecure_code.yaml")
    assert organism.model == "qwen2.5-coder-0.5b-instruct" and organism.datasets[0].heldout is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\ngrids: {}\n")
    with pytest.raises(ConfigError, match="unknown study setting 'grids'"):
        StudyConfig.from_yaml(bad)
    bad.write_text("grid: {schedules: [cosine, bogus]}\n")
    with pytest.raises(ConfigError, match="unknown schedule 'bogus'"):
        StudyConfig.from_yaml(bad)
    bad.write_text("preset: demo\ntraining: {steps: 4, save_steps: [0, 4]}\n")
    with pytest.raises(ConfigError, match="checkpoints"):
        StudyConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="unknown study stage"):
        PRESETS["demo"].with_(stages=("finetune", "vibes"))
    with pytest.raises(ConfigError, match="unknown study preset"):
        preset("huge")
    over = StudyConfig.from_yaml(REPO_EXAMPLES / "study.yaml", out="elsewhere")
    assert over.out == "elsewhere" and PRESETS["demo"].with_(training__steps=12).training.steps == 12


def test_stage_dependencies_are_checked(tmp_path):
    from emprobe.studies.context import StudyContext
    from emprobe.studies.runner import build_stages

    cfg = preset("fast").with_(out=str(tmp_path), stages=("finetune", "dynamics"))
    with pytest.raises(ConfigError, match="needs stage 'margins'"):
        build_stages(StudyContext(cfg, log=None))
    names = [s.name for s in build_stages(StudyContext(preset("fast").with_(out=str(tmp_path), stages=(
        "finetune", "margins", "samples")), log=None))]
    assert names == ["setup", "finetune", "margins", "samples"]


def test_ep_verbs_stay_functions_after_importing_their_packages():
    import emprobe as ep
    import emprobe.studies  # noqa: F401  (a subpackage named like a verb would shadow it)

    assert callable(ep.study) and callable(ep.demo) and ep.study.__module__ == "emprobe.studies.runner"


def test_preset_behaviour_lives_in_config_fields():
    """The causal stages read patch layers, spans and sampled answers from the config (no preset-name checks):
    the presets' fields give the layers the stages used to derive from the preset's name."""
    demo, fast = preset("demo"), preset("fast")
    for n in range(2, 64):
        assert fast.patch_layers(n) == sorted({n // 3, 2 * n // 3})
        assert demo.patch_layers(n) == sorted({n // 4, n // 2, 3 * n // 4})
    assert (fast.patch_spans, fast.causal_samples) == (("last_prompt",), 0)
    assert (demo.patch_spans, demo.causal_samples) == (("last_prompt", "prompt"), 1)
    custom = StudyConfig.from_dict({"patch_depths": [0.5], "patch_spans": ["prompt"], "causal_samples": 2})
    assert custom.patch_layers(30) == [15] and custom.patch_spans == ("prompt",)


def test_one_stage_registry():
    from emprobe.studies.runner import verdicts
    from emprobe.studies.stages import DEFAULT_STAGES, REGISTRY, STAGES

    assert [s.name for s in REGISTRY][1:] == list(STAGES)
    assert list(StudyConfig().stages) == list(DEFAULT_STAGES) == [s for s in STAGES if s != "mitigations"]
    assert {s.name: s.claim for s in REGISTRY if s.claim} == {"priors": "Claim 2", "dynamics": "Claim 1",
                                                              "overlap": "Claim 3"}
    v = {"claim": "c", "verdict": "supported", "number": "1", "control": "k", "uncertainty": "u"}
    rows = verdicts({"overlap": {"verdict": v}, "dynamics": {"verdict": v}, "samples": {}})
    assert [(r["id"], r["stage"]) for r in rows] == [("Claim 1", "dynamics"), ("Claim 3", "overlap")]


def test_claims_settings_are_declared_in_the_config_and_round_trip(tmp_path):
    """Each claim's SESOI is a config field (``claims``), declared before looking: defaults, YAML (also with a preset
    underneath), a saved config read back equal, and bad values as one-line errors naming the field."""
    import yaml

    from emprobe.studies import Claims

    c = StudyConfig().claims
    assert (c.sesoi_fraction, c.sesoi_gap, c.sesoi_rho, c.sesoi_overlap, c.sesoi_pair_rho) == (0.25, None, 0.3, 0.05, 0.1)
    f = tmp_path / "s.yaml"
    f.write_text("preset: fast\nclaims: {sesoi_fraction: 0.5, sesoi_rho: 0.2, sesoi_pair_rho: 0.15}\n")
    cfg = StudyConfig.from_yaml(f)
    assert cfg.preset == "fast" and cfg.claims == Claims(sesoi_fraction=0.5, sesoi_rho=0.2, sesoi_pair_rho=0.15)
    assert cfg.training == preset("fast").training
    custom = preset("paper").with_(preset="custom", claims__sesoi_gap=0.01, prior_models=(("instruct", "m"),))
    for c in (preset("demo"), preset("fast"), preset("paper"), cfg, custom):
        f.write_text(yaml.safe_dump(c.to_dict()))
        assert StudyConfig.from_yaml(f) == c
    for text, match in (("claims: {sesoi_fraction: 0}", "`claims.sesoi_fraction` must be > 0"),
                        ("claims: {sesoi_fraction: 1.5}", "`claims.sesoi_fraction` must be <= 1"),
                        ("claims: {sesoi_rho: 1}", "`claims.sesoi_rho` must be < 1"),
                        ("claims: {sesoi_gap: -0.02}", "`claims.sesoi_gap` must be > 0"),
                        ("claims: {sesoi_overlap: big}", "`claims.sesoi_overlap` must be a number"),
                        ("claims: {sesoi_pair_rho: .nan}", "`claims.sesoi_pair_rho` must be a number"),
                        ("claims: {sesoi: 0.1}", "unknown claims field 'sesoi'"),
                        ("claims: 0.25", "claims must be a mapping"),
                        ("min_gap: 0.02", "`min_gap` is now `claims.sesoi_gap`"),
                        ("grid: {seeds: [0, 1, 1]}", "`grid.seeds` repeats a value"),
                        ("prior_models: [instruct]", "`prior_models` must be a mapping")):
        f.write_text(text + "\n")
        with pytest.raises(ConfigError, match=match) as e:
            StudyConfig.from_yaml(f)
        assert "\n" not in str(e.value)


def test_causal_questions_leave_half_for_the_cross_fit_direction():
    """``n_causal`` = 12 in the demo and paper presets, at most half the questions (the mean-diff direction steer and
    ablate use is fit on the rest); the fast preset stays small."""
    assert preset("demo").questions.causal_count(30) == 12 and preset("paper").questions.causal_count(24) == 12
    assert preset("demo").questions.causal_count(8) == 4 and preset("fast").questions.causal_count(8) == 3
    assert preset("demo").causal_fraction == 0.25
    with pytest.raises(ConfigError, match="causal_fraction"):
        StudyConfig.from_dict({"causal_fraction": 0})
