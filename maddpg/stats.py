"""Small-sample statistics for comparing runs: bootstrap confidence intervals and tests of a difference.

A group's final scores are summarised with rliable (Agarwal et al. 2021, the field's library for
reliable RL evaluation): mean and interquartile mean with stratified-bootstrap 95% CIs, and the
probability that a run of one group beats a run of another. Welch's t-test and a permutation test
give p-values. `bootstrap_ci` is a vectorised percentile bootstrap for many means at once (curve
bands, episode means). Resampling is seeded, so a report is reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import scipy.stats
from rliable import library, metrics

RESAMPLES = 10_000
# rliable's bootstrap is a Python loop (10000 resamples of a probability of improvement: 4 s)
RLIABLE_RESAMPLES = 2000


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
    with warnings.catch_warnings():  # scores all alike: Welch's p is nan, and scipy says why
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = scipy.stats.ttest_ind(a, b, equal_var=False)
    permutation = scipy.stats.permutation_test(
        (a, b), lambda x, y: np.mean(x) - np.mean(y), n_resamples=RESAMPLES, rng=np.random.default_rng(0)
    )
    return {"difference": float(a.mean() - b.mean()), "welch_p": float(welch.pvalue),
            "permutation_p": float(permutation.pvalue)}  # fmt: skip


@contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded for the block and restored after it: rliable's bootstrap draws
    from it (np.random.choice), whatever random_state it is given."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval(aggregate: Callable[..., float], groups: list[np.ndarray], resamples: int) -> tuple[float, list[float]]:
    """rliable's stratified-bootstrap point estimate and 95% CI of `aggregate(*groups)`, each group's
    scores shaped (runs, tasks); the same for the same scores, call after call."""
    with seeded_global_numpy(0):
        points, intervals = library.get_interval_estimates(
            {"": groups}, lambda *x: np.array([aggregate(*x)]), reps=resamples
        )
    return float(points[""][0]), [float(v) for v in intervals[""][:, 0]]


def summarise(scores: Sequence[float], resamples: int = RLIABLE_RESAMPLES) -> dict[str, object]:
    """One group's final scores (one per run) -> mean and IQM, each with its 95% stratified-bootstrap CI."""
    runs = [np.asarray(scores, dtype=float)[:, None]]  # (runs, tasks): one task
    summary = {}
    for name, aggregate in (("mean", metrics.aggregate_mean), ("iqm", metrics.aggregate_iqm)):
        summary[name], summary[f"{name}_ci95"] = interval(aggregate, runs, resamples)
    return summary


def improvement(a: Sequence[float], b: Sequence[float], resamples: int = RLIABLE_RESAMPLES) -> dict[str, object]:
    """P(a run of a scores above a run of b; ties count half), with its 95% stratified-bootstrap CI."""
    pair = [np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[:, None]]
    point, ci = interval(metrics.probability_of_improvement, pair, resamples)
    return {"probability_of_improvement": point, "probability_of_improvement_ci95": ci}
