"""FinetuneConfig validation, checkpoint plans and learning-rate schedules (no model needed)."""

from __future__ import annotations

import math

import pytest

from emprobe.errors import ConfigError
from emprobe.finetuning import SCHEDULES, FinetuneConfig, log_spaced_steps, lr_curve


def cfg(**kw) -> FinetuneConfig:
    return FinetuneConfig.from_dict({"data": "builtin:risky-finance", "out": "/tmp/x", **kw})


def test_checkpoint_plans_always_include_start_and_end():
    assert cfg(max_steps=25, save_steps="0,5,10,25").validate().checkpoint_steps(25) == [0, 5, 10, 25]
    assert cfg(save_steps=[5, 10]).checkpoint_steps(25) == [0, 5, 10, 25]
    assert cfg(save_every=10).checkpoint_steps(25) == [0, 10, 20, 25]
    assert cfg(save_log_spaced=6).checkpoint_steps(100) == [0, 1, 3, 10, 32, 100]
    assert cfg().checkpoint_steps(100) == [0, 1, 3, 10, 32, 100]  # default: 6 log-spaced
    both = cfg(save_steps=[7], save_every=50).checkpoint_steps(100)
    assert both == [0, 7, 50, 100]


def test_log_spaced_steps_are_distinct_and_fill_small_runs():
    for total in (1, 2, 3, 10, 57, 1000):
        for k in (2, 4, 8):
            s = log_spaced_steps(k, total)
            assert s[0] == 0 and s[-1] == total and s == sorted(set(s))
            assert len(s) == min(k, total + 1)


def test_save_steps_beyond_max_steps_fail_before_loading():
    with pytest.raises(ConfigError, match=r"`save_steps` 50 beyond `max_steps` 25"):
        cfg(max_steps=25, save_steps="0,5,50").validate()


@pytest.mark.parametrize("bad, match", [
    (dict(schedule="exponential"), "unknown `schedule` 'exponential'"),
    (dict(resume=True, overwrite=True), "exclude each other"),
    (dict(lr=0), "`lr` must be > 0"),
    (dict(batch_size=0), "`batch_size` must be >= 1"),
    (dict(data=""), "no training data"),
    (dict(out=""), "no run directory"),
    (dict(save_log_spaced=1), "`save_log_spaced` must be >= 2"),
    (dict(full=True, layers="0:2"), "`layers` restricts a LoRA adapter"),
    (dict(save_steps="0,five"), "comma-separated integers"),
    (dict(lr="fast"), "`lr` must be a number, got str 'fast'"),
    (dict(max_steps=2.5), "`max_steps` must be an integer or null, got float 2.5"),
    (dict(layers="a:b"), "bad `layers` 'a:b'"),
    (dict(dtype="fp99"), "unknown `dtype` 'fp99'"),
])
def test_invalid_settings_name_the_option(bad, match):
    """Library messages name the parameter (in backticks); the CLI shows the option (test_fuzz_cli.py)."""
    with pytest.raises(ConfigError, match=match):
        cfg(**bad).validate()


def test_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="unknown fine-tuning setting 'learning_rate'"):
        cfg(learning_rate=1e-4)


def test_run_settings_exclude_operational_fields():
    a, b = cfg(threads=1, progress=False), cfg(threads=2, resume=True)
    assert a.run_settings() == b.run_settings()
    assert "out" not in a.run_settings() and "lr" in a.run_settings()


def test_total_steps_from_epochs():
    c = cfg(epochs=2, batch_size=8, grad_accum=2)
    assert c.total_steps(100) == 2 * math.ceil(math.ceil(100 / 8) / 2)
    assert c.total_steps(100, world_size=2) == 2 * math.ceil(math.ceil(50 / 8) / 2)
    assert cfg(max_steps=7).total_steps(100) == 7


def test_schedules_have_their_shapes():
    lr = 1e-3
    assert set(SCHEDULES) >= {"constant", "linear", "cosine", "cosine-with-restarts", "warmup-stable-decay"}
    const = lr_curve(cfg(schedule="constant", lr=lr, warmup_steps=4), 20)
    assert const[:4] == pytest.approx([0, lr / 4, lr / 2, 3 * lr / 4]) and const[4:] == pytest.approx([lr] * 16)
    lin = lr_curve(cfg(schedule="linear", lr=lr), 20)
    assert lin[0] == lr and lin[-1] == pytest.approx(lr / 20) and all(a > b for a, b in zip(lin, lin[1:]))
    cos = lr_curve(cfg(schedule="cosine", lr=lr), 20)
    assert cos[10] == pytest.approx(lr / 2) and all(a >= b for a, b in zip(cos, cos[1:]))
    rst = lr_curve(cfg(schedule="cosine-with-restarts", lr=lr, num_cycles=2), 20)
    assert rst[0] == rst[10] == pytest.approx(lr) and rst[9] < 0.1 * lr  # restart half-way
    wsd = lr_curve(cfg(schedule="warmup-stable-decay", lr=lr, warmup_steps=2, decay_fraction=0.25,
                       min_lr_ratio=0.1), 20)
    assert wsd[2:15] == pytest.approx([lr] * 13)  # stable phase
    assert wsd[16] < lr and wsd[-1] < 0.2 * lr and min(wsd[2:]) >= 0.1 * lr - 1e-12
