"""Analyses: tracking, priors, overlap, dynamics, monitor, patching, steering (issue: analysis)."""
