"""``python -m emprobe`` = the ``emprobe`` command."""

from emprobe.cli import main

main()
