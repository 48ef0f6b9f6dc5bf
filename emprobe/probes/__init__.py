"""Probes: activation extraction and linear misalignment directions (issue: probes)."""
