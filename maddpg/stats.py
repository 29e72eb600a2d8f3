"""Small-sample statistics for comparing runs: bootstrap confidence intervals and tests of a difference.

Resampling uses seeded numpy generators, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats

RESAMPLES = 10_000


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over the last axis of `values` (..., n) -> (low, high),
    each shaped like values[..., 0]. With one value the interval is that value."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(values.shape[-1], size=(resamples, values.shape[-1]))
    means = values[..., picks].mean(axis=-1)  # (..., resamples)
    tail = (1 - level) / 2
    return np.quantile(means, tail, axis=-1), np.quantile(means, 1 - tail, axis=-1)


def compare(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Do groups a and b (one final score per seed) differ in mean? Welch's t-test (assumes roughly
    normal scores) and an exact-or-resampled permutation test (assumes nothing; with 3 seeds a side
    its p-value cannot fall below 0.1)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    welch = scipy.stats.ttest_ind(a, b, equal_var=False)
    permutation = scipy.stats.permutation_test(
        (a, b), lambda x, y: np.mean(x) - np.mean(y), n_resamples=RESAMPLES, rng=np.random.default_rng(0)
    )
    return {"difference": float(a.mean() - b.mean()), "welch_p": float(welch.pvalue),
            "permutation_p": float(permutation.pvalue)}  # fmt: skip
