"""``python -m emprobe.finetuning --cell CONFIG_JSON``: train one :class:`~emprobe.finetuning.FinetuneConfig`
given as a JSON object (or a path to a JSON file) — the process the sweep executors start per cell
(:mod:`emprobe.finetuning.executors`). An emprobe error prints one line and exits with status 2.

``python -m emprobe.finetuning --worker`` trains the configs it reads on stdin, one per line, one after another
(:mod:`emprobe.finetuning.workers`).

The command line's ``emprobe finetune ...`` is ``python -m emprobe finetune ...`` (under ``torchrun``:
``torchrun ... -m emprobe finetune ...``); this module never imports the CLI, which sits above every stage.
"""

import sys


def run_cell(arg: str) -> int:
    import json
    from pathlib import Path

    from emprobe.errors import EmprobeError
    from emprobe.finetuning import FinetuneConfig, finetune

    try:
        text = arg if arg.lstrip().startswith("{") else Path(arg).read_text(encoding="utf-8")
        run = finetune(FinetuneConfig.from_dict(json.loads(text)))
    except EmprobeError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(f"{run.path}: {len(run.checkpoints())} checkpoints, status {run.manifest.get('status')}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cell":
        sys.exit(run_cell(sys.argv[2]))
    if sys.argv[1:] == ["--worker"]:
        from emprobe.finetuning.workers import serve

        sys.exit(serve())
    print("usage: python -m emprobe.finetuning --cell CONFIG_JSON (a sweep cell) or --worker; to fine-tune from the "
          "command line use `emprobe finetune ...` or `python -m emprobe finetune ...`", file=sys.stderr)
    sys.exit(2)
