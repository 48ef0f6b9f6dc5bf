"""The shared statistics of every analysis (one place): tests, bootstrap, reliability; subspaces in
:mod:`emprobe.analysis.stats.subspace`."""

from emprobe.analysis.stats.core import (
    auroc,
    bootstrap_ci,
    covariate_null_targets,
    expanded_level,
    paired_row_spearman,
    partial_spearman,
    permutation_pvalue,
    r2_score,
    sign_flip_pvalue,
    spearman,
    spearman_brown,
    split_half_reliability,
    t_interval,
    zscore_vs_null,
)

__all__ = [
    "auroc", "bootstrap_ci", "covariate_null_targets", "expanded_level",
    "paired_row_spearman", "partial_spearman", "permutation_pvalue", "r2_score", "sign_flip_pvalue",
    "spearman", "spearman_brown", "split_half_reliability", "t_interval", "zscore_vs_null",
]
