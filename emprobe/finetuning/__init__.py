"""Fine-tuning: narrow LoRA or full fine-tunes that save checkpoints along the trajectory.

>>> from emprobe.finetuning import FinetuneConfig, finetune
>>> run = finetune(FinetuneConfig(model="smollm2-135m-instruct", data="builtin:risky-finance",
...                               out="runs/rf", max_steps=25, save_steps=[0, 5, 10, 25]))
>>> [c.step for c in run.checkpoints()]
[0, 5, 10, 25]

Built on transformers' ``Trainer`` + peft (the same command runs data-parallel under ``torchrun``);
the loss covers assistant tokens only. See :mod:`emprobe.finetuning.run` for the run-directory layout and
:meth:`Run.iter_models` for iterating checkpoints with one loaded base model.
"""

from emprobe.finetuning.config import FinetuneConfig
from emprobe.finetuning.run import Checkpoint, Run, checkpoint_name, load_run
from emprobe.finetuning.schedules import SCHEDULES, lr_curve
from emprobe.finetuning.steps import log_spaced_steps

__all__ = ["SCHEDULES", "Checkpoint", "FinetuneConfig", "Run", "checkpoint_name", "finetune", "load_run",
           "log_spaced_steps", "lr_curve"]


def __getattr__(name: str):
    """``finetune`` (the trainer, which imports transformers) loads on first use, so the CLI and the config
    stay light to import."""
    if name == "finetune":
        from emprobe.finetuning.trainer import finetune

        return finetune
    raise AttributeError(f"module 'emprobe.finetuning' has no attribute {name!r}")
