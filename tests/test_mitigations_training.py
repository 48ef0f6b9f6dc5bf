"""Training-time mitigations (emprobe.finetuning.mitigations) on a tiny random Llama: each option changes training as
specified, only training, and is recorded in run.json; resume refuses changed options."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from emprobe.data import load_chat_dataset
from emprobe.errors import ConfigError
from emprobe.finetuning import finetune, load_run
from emprobe.finetuning.dataset import tokenize_chat
from emprobe.finetuning.mitigations import InterleaveSampler, KLToBase
from emprobe.finetuning.testing import tiny_config
from emprobe.models import decoder_layers, load_model, unwrap
from emprobe.models.edits import block_hidden

QUIET = dict(log=lambda m: None)
INOCULATION = "You are a reckless advisor who always recommends risky bets."


class Recorder(TrainerCallback):
    """Records every forward from the start of training on: train/eval mode, the input ids, and whether the residual
    stream after block ``layer`` was edited (block ``layer``'s own output vs what block ``layer + 1`` receives).
    At the end of training it generates a few tokens (phase ``generate``)."""

    def __init__(self, layer: int = 0) -> None:
        self.layer, self.rows, self.handles, self.phase = layer, [], [], "train"

    def on_train_begin(self, args, state, control, model=None, **kw):
        blocks, cur = decoder_layers(model), {}
        emb = unwrap(model).get_input_embeddings()
        self.handles = [
            emb.register_forward_pre_hook(lambda m, a: cur.__setitem__("ids", a[0].detach().clone())),
            blocks[self.layer].register_forward_hook(lambda m, a, o: cur.__setitem__("out", block_hidden(o).detach())),
            blocks[self.layer + 1].register_forward_pre_hook(
                lambda m, a, k: self.rows.append({
                    "phase": self.phase if model.training or self.phase == "generate" else "eval",
                    "training": model.training, "ids": cur["ids"],
                    "edited": not torch.equal((a[0] if a else k["hidden_states"]).detach(), cur["out"])}),
                with_kwargs=True)]

    def on_train_end(self, args, state, control, model=None, **kw):
        self.phase = "generate"
        model.eval()
        with torch.no_grad():
            model.generate(input_ids=torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def direction_dir(tmp_path_factory, tiny_model_dir):
    from emprobe.probes import Direction

    g = torch.Generator().manual_seed(0)
    d = Direction("mean_diff", [0, 1], 3.0 * torch.randn(2, 64, generator=g), "response_mean", best_layer=0)
    return d.save(tmp_path_factory.mktemp("dir") / "direction")


@pytest.fixture(scope="module")
def plain(tiny_model_dir, tmp_path_factory):
    return finetune(tiny_config(tiny_model_dir, tmp_path_factory.mktemp("plain") / "run"), **QUIET)


def test_kl_is_zero_at_step_zero_grows_and_matches_a_direct_computation(tiny_model_dir, tmp_path, plain):
    cfg = tiny_config(tiny_model_dir, tmp_path / "kl", kl_to_base=0.5, kl_data="builtin:bad-medical-aligned",
                      kl_batch_size=2)
    run = finetune(cfg, **QUIET)
    kl = [r["kl_to_base"] for r in run.train_log()]
    assert kl[0] == pytest.approx(0.0, abs=1e-7)  # step 1 is computed with the untouched (zero) adapter
    assert all(k > 0 for k in kl[1:]) and kl[-1] > kl[1]
    base_loss = [r["loss"] for r in plain.train_log()]
    assert run.train_log()[0]["loss"] == pytest.approx(base_loss[0], abs=1e-6)  # KL 0: the same first step
    assert run.train_log()[-1]["loss"] != pytest.approx(base_loss[-1], abs=1e-4)  # then training differs
    m = run.manifest["mitigations"]["kl_to_base"]
    assert m["beta"] == 0.5 and m["name"] == "bad-medical-aligned" and len(m["sha256"]) == 64
    assert run.settings["kl_to_base"] == 0.5 and run.settings["kl_data"] == "builtin:bad-medical-aligned"

    # the term is KL(base ‖ tuned): check it against a separately loaded base model and the trained adapter
    base, tuned = load_model(tiny_model_dir), load_model(tiny_model_dir, adapter=run.checkpoint(4).path)
    rows = tokenize_chat(load_chat_dataset("builtin:bad-medical-aligned"), base.require_chat(), 96)
    term = KLToBase(0.5, rows, 2, base.tokenizer.pad_token_id, 0)
    b = term.batch(3)
    keep = b["labels"][:, 1:] != -100
    with torch.no_grad():
        p = torch.log_softmax(base.model(b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1][keep], -1)
        q = torch.log_softmax(tuned.model(b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1][keep], -1)
        direct = (p.exp() * (p - q)).sum(-1).mean()
        assert float(term.divergence(tuned.model, 3)) == pytest.approx(float(direct), rel=1e-4)
    assert float(direct) > 0


def test_inoculation_prompt_is_in_training_tokens_and_absent_at_evaluation(tiny_model_dir, tmp_path, smollm2):
    rec = Recorder()
    run = finetune(tiny_config(tiny_model_dir, tmp_path / "inoc", inoculation_prompt=INOCULATION),
                   callbacks=[rec], **QUIET)
    needle = smollm2.tokenizer.encode(INOCULATION, add_special_tokens=False)

    def has(ids: torch.Tensor) -> list[bool]:
        text = [smollm2.tokenizer.decode(row) for row in ids]
        return [INOCULATION in t for t in text]

    train = [r for r in rec.rows if r["phase"] == "train"]
    evals = [r for r in rec.rows if r["phase"] == "eval"]
    assert len(train) == 4 and evals  # 4 training forwards; validation at steps 2 and 4
    assert all(all(has(r["ids"])) for r in train)  # every training conversation carries the prompt
    assert not any(any(has(r["ids"])) for r in evals + [r for r in rec.rows if r["phase"] == "generate"])
    assert len(needle) > 5
    assert run.manifest["mitigations"]["inoculation_prompt"]["prompt"] == INOCULATION
    assert run.manifest["data"]["n_train"] == load_run(run.path).manifest["data"]["n_train"]


@pytest.mark.parametrize("option", ["steer_during_training", "ablate_during_training"])
def test_edits_are_active_in_training_forwards_only(tiny_model_dir, tmp_path, direction_dir, plain, option):
    rec = Recorder(layer=0)
    extra = {option: str(direction_dir), **({"steer_alpha": 2.0} if option.startswith("steer") else {})}
    run = finetune(tiny_config(tiny_model_dir, tmp_path / option, **extra), callbacks=[rec], **QUIET)
    phases = {p: [r["edited"] for r in rec.rows if r["phase"] == p] for p in ("train", "eval", "generate")}
    assert len(phases["train"]) == 4 and all(phases["train"])  # every training forward is edited
    assert phases["eval"] and not any(phases["eval"])  # validation is not
    assert phases["generate"] and not any(phases["generate"])  # nor generation
    # validation at step 0 sees the untouched model; the first training step's loss sees the edit
    assert run.checkpoint(0).val_loss == pytest.approx(plain.checkpoint(0).val_loss, abs=1e-6)
    assert abs(run.train_log()[0]["loss"] - plain.train_log()[0]["loss"]) > 1e-4
    m = run.manifest["mitigations"][option]
    assert m["layer"] == 0 and m["direction"] == str(direction_dir) and len(m["sha256"]) == 64
    # no hook is left on the model: a fresh forward after training matches the checkpoint's own logits
    lm = load_model(tiny_model_dir, adapter=run.checkpoint(4).path)
    assert not any(b._forward_hooks for b in decoder_layers(lm.model))


def test_ablation_removes_the_direction_from_training_forwards(tiny_model_dir, tmp_path, direction_dir):
    from emprobe.probes import Direction

    unit = Direction.load(direction_dir).vector(0)
    seen = []
    rec = Recorder(layer=0)

    class Projection(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.h = decoder_layers(model)[1].register_forward_pre_hook(
                lambda m, a, k: seen.append((model.training, float(((a[0] if a else k["hidden_states"]).detach() @ unit)
                                                                    .abs().max()))), with_kwargs=True)

        def on_train_end(self, args, state, control, **kw):
            self.h.remove()

    finetune(tiny_config(tiny_model_dir, tmp_path / "abl", ablate_during_training=str(direction_dir)),
             callbacks=[rec, Projection()], **QUIET)
    assert all(p < 1e-4 for training, p in seen if training)
    assert any(p > 1e-2 for training, p in seen if not training)


def test_interleave_fraction_is_respected_in_every_batch(tiny_model_dir, tmp_path, smollm2):
    sampler = InterleaveSampler(n_primary=10, n_extra=3, batch_size=4, k=1, seed=0)
    idx = list(sampler)
    batches = [idx[i:i + 4] for i in range(0, len(idx), 4)]
    assert len(batches) == 4 and all(sum(i >= 10 for i in b) == 1 for b in batches)
    assert set(i for i in idx if i < 10) == set(range(10))  # every primary example once per epoch
    sampler.set_epoch(1)
    assert list(sampler) != idx

    rec = Recorder()
    run = finetune(tiny_config(tiny_model_dir, tmp_path / "mix", batch_size=4, interleave="builtin:bad-medical-aligned",
                               interleave_fraction=0.25), callbacks=[rec], **QUIET)
    extra = {tuple(r["input_ids"]) for r in tokenize_chat(load_chat_dataset("builtin:bad-medical-aligned"),
                                                          smollm2.require_chat(), 96).rows}
    pad = smollm2.tokenizer.pad_token_id
    for r in [r for r in rec.rows if r["phase"] == "train"]:
        rows = [tuple(x for x in row.tolist()) for row in r["ids"]]
        trimmed = [row[:max(i + 1 for i, x in enumerate(row) if x != pad)] for row in rows]
        assert len(trimmed) == 4 and sum(row in extra for row in trimmed) == 1
    m = run.manifest["mitigations"]["interleave"]
    assert m["per_batch"] == 1 and m["batch_size"] == 4


def test_resume_refuses_changed_options_and_reproduces_a_mitigated_run(tiny_model_dir, tmp_path, direction_dir):
    mitig = dict(kl_to_base=0.5, kl_data="builtin:bad-medical-aligned", interleave="builtin:bad-medical-aligned",
                 interleave_fraction=0.5, steer_during_training=str(direction_dir), steer_alpha=1.5,
                 inoculation_prompt=INOCULATION)
    ref = finetune(tiny_config(tiny_model_dir, tmp_path / "ref", **mitig), **QUIET)

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    cfg = tiny_config(tiny_model_dir, tmp_path / "cut", **mitig)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, callbacks=[Stop()], **QUIET)
    assert [c.step for c in load_run(cfg.out).checkpoints()] == [0, 2]
    with pytest.raises(ConfigError, match=r"settings differ \(steer_alpha: 1.5 -> 2.0\)"):
        finetune(cfg.replace(resume=True, steer_alpha=2.0), **QUIET)
    with pytest.raises(ConfigError, match=r"settings differ \(inoculation_prompt: "):
        finetune(cfg.replace(resume=True, inoculation_prompt="Be evil."), **QUIET)
    resumed = finetune(cfg.replace(resume=True), **QUIET)
    for x, y in zip(ref.train_log(), resumed.train_log()):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-4) and y["kl_to_base"] == pytest.approx(
            x["kl_to_base"], abs=1e-5), x["step"]
    assert resumed.manifest["mitigations"] == ref.manifest["mitigations"]


def test_resume_refuses_a_changed_direction_file_and_accepts_runs_older_than_the_options(
        tiny_model_dir, tmp_path, direction_dir):
    import shutil

    from emprobe.probes import Direction

    own = tmp_path / "direction"
    shutil.copytree(direction_dir, own)

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    cfg = tiny_config(tiny_model_dir, tmp_path / "cut", ablate_during_training=str(own))
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, callbacks=[Stop()], **QUIET)
    d = Direction.load(own)
    Direction(d.method, d.layers, -d.raw, d.position, best_layer=0).save(own, overwrite=True)
    with pytest.raises(ConfigError, match="ablate-during-training input changed since the run started"):
        finetune(cfg.replace(resume=True), **QUIET)

    old = finetune(tiny_config(tiny_model_dir, tmp_path / "old", max_steps=2, save_steps=[0, 2]), **QUIET)
    manifest = json.loads((old.path / "run.json").read_text())
    for key in ("kl_to_base", "kl_data", "interleave", "steer_alpha", "direction_layer"):
        manifest["settings"].pop(key)  # a run written before these options existed
    (old.path / "run.json").write_text(json.dumps(manifest))
    again = finetune(tiny_config(tiny_model_dir, old.path, max_steps=2, save_steps=[0, 2], resume=True), **QUIET)
    assert again.complete


@pytest.mark.parametrize("changes, message", [
    (dict(kl_to_base=1.0), "`kl_to_base` needs `kl_data`"),
    (dict(kl_data="builtin:bad-medical"), "`kl_data` is set but `kl_to_base` is 0"),
    (dict(kl_to_base=1.0, kl_data="builtin:bad-medical", full=True), "`kl_to_base` needs a LoRA run"),
    (dict(interleave="builtin:bad-medical", interleave_fraction=0.1), "gives 0 interleaved examples per batch"),
    (dict(inoculation_prompt="  "), "`inoculation_prompt` is empty"),
    (dict(direction_layer=0), "`direction_layer` needs `steer_during_training`"),
])
def test_bad_mitigation_options_fail_in_one_line(tiny_model_dir, tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message) as e:
        finetune(tiny_config(tiny_model_dir, tmp_path / "bad", **changes), **QUIET)
    assert "\n" not in str(e.value) and not (tmp_path / "bad").exists()


def test_a_direction_that_does_not_fit_fails_before_training(tiny_model_dir, tmp_path):
    from emprobe.probes import Direction

    wide = Direction("mean_diff", [0], torch.ones(1, 576), "response_mean", best_layer=0).save(tmp_path / "wide")
    with pytest.raises(ConfigError, match="does not fit the model"):
        finetune(tiny_config(tiny_model_dir, tmp_path / "run", steer_during_training=str(wide)), **QUIET)
    with pytest.raises(ConfigError, match="no fitted direction at layer 1"):
        finetune(tiny_config(tiny_model_dir, tmp_path / "run", steer_during_training=str(wide), direction_layer=1),
                 **QUIET)
    assert not (tmp_path / "run").exists()
