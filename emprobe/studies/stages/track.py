"""Stage ``track``: the base-model directions followed through the misaligned run's checkpoints, and through its
aligned-data control (at both ends) as the control: a direction that moves as much in the control run tracks
fine-tuning in general, not misalignment."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section


def stage(ctx) -> Stage:
    return Stage("track", "directions through the checkpoints", lambda d: run(ctx, d), 45,
                 {"seed": ctx.cfg.seed}, ("setup", "finetune", "directions"))


def run(ctx, d: Path) -> dict:
    from emprobe.analysis.track import track

    c = ctx.cfg
    dirs = [ctx.direction("mean_diff"), ctx.direction("persona")]
    kw = dict(refit=False, n_random=20, batch_size=c.eval_batch_size, seed=c.seed, merge=True)
    res = track(ctx.run(ctx.reference), dirs, ctx.qs("eval"), **kw)
    control = track(ctx.run(ctx.control), dirs, ctx.qs("eval"), steps=[0, ctx.last_step], **kw)
    control.save(d / "control")
    sec = result_section(ctx, res, d)
    lines, numbers = [], {}
    for label, m in res.shifts.items():
        k = control.shifts[label]
        numbers.update({f"{label}_shift_control": k.delta, f"{label}_z_control": k.z})
        line = (f"In the aligned control the {label} projection moves {k.delta:+.3f} (z = {k.z:.1f} against random "
                f"directions) vs {m.delta:+.3f} in the misaligned run (95% CI [{m.ci_low:+.3f}, {m.ci_high:+.3f}]).")
        if k.delta >= m.ci_low and m.delta > 0:
            lines.insert(0, f"The aligned control moves as far along the {label} direction ({k.delta:+.3f} vs "
                            f"{m.delta:+.3f}, inside or above the misaligned run's CI): the shift tracks fine-tuning, "
                            "not misalignment. " + line)
        else:
            lines.append(line)
    first = [x for x in lines if x.startswith("The aligned control moves as far")]
    sec["findings"] = first + sec["findings"] + [x for x in lines if x not in first]
    sec["numbers"].update({k: round(float(v), 6) for k, v in numbers.items()})
    sec["control"] = f"{sec['control']}; the aligned-data control run measured the same way"
    sec["plots"].append(ctx.rel(d / "control" / "plot.png"))
    return sec
