"""Evaluation: per-question alignment scores (judge-free margins, LLM judges) (issue: evaluate)."""
