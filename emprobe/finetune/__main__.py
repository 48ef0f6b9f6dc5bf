"""``python -m emprobe.finetune ...`` = ``emprobe finetune ...`` (handy under ``torchrun -m``)."""

import sys

from emprobe.cli import main

if __name__ == "__main__":
    main(["finetune", *sys.argv[1:]])
