"""Small-sample statistics for comparing runs: bootstrap confidence intervals and tests of a difference.

A group's final scores are summarised with rliable (Agarwal et al. 2021, the field's library for
reliable RL evaluation): mean and interquartile mean with stratified-bootstrap 95% intervals, and
the probability that a run of one group beats a run of another. At the seed counts of RL studies
a percentile bootstrap is narrow: over 5 seeds its nominal 95% covers about 84% of the time, over
3 it is the [min, max] of the scores; so the mean also gets its t-interval, and a difference of
means the Welch t-interval. Welch's t-test and an exact permutation test give p-values, Hedges' g
the effect size, and `holm` corrects p-values read together. `bootstrap_ci` is a vectorised
percentile bootstrap for many means at once (curve bands, episode means). Resampling is seeded,
so a report is reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import scipy.stats
from rliable import library, metrics

RESAMPLES = 10_000
# A permutation test enumerates every split of the pooled scores up to this many (10 seeds a side:
# 184,756), and draws this many random ones beyond.
PERMUTATIONS = 200_000
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


def difference_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def compare(a: Sequence[float], b: Sequence[float]) -> dict[str, object]:
    """Do groups a and b (one final score per seed) differ in mean? The difference with its 95% Welch
    t-interval, Welch's t-test (assumes roughly normal scores), a permutation test (assumes nothing;
    exact up to PERMUTATIONS splits: with 3 seeds a side its p cannot fall below 0.1, with 5 below
    0.008) and Hedges' g (the difference in pooled standard deviations, corrected for small samples)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with warnings.catch_warnings():  # scores all alike: Welch's p and interval are nan, and scipy says why
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = scipy.stats.ttest_ind(a, b, equal_var=False)
        low, high = welch.confidence_interval(0.95)
    permutation = scipy.stats.permutation_test(
        (a, b), difference_of_means, n_resamples=PERMUTATIONS, vectorized=True, rng=np.random.default_rng(0)
    )
    return {"difference": float(a.mean() - b.mean()), "difference_ci95_t": [float(low), float(high)],
            "welch_p": float(welch.pvalue), "permutation_p": float(permutation.pvalue),
            "hedges_g": hedges_g(a, b)}  # fmt: skip


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled standard deviation, times Hedges' small-sample correction; nan when
    both groups' scores are all alike."""
    n, m = len(a), len(b)
    pooled = np.sqrt(((n - 1) * a.var(ddof=1) + (m - 1) * b.var(ddof=1)) / (n + m - 2))
    correction = 1 - 3 / (4 * (n + m) - 9)
    return float(correction * (a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values read together (the chance of any false difference
    among them stays below the level), in their order; a nan p-value counts as 1."""
    p = [1.0 if np.isnan(value) else float(value) for value in pvalues]
    adjusted, running = [1.0] * len(p), 0.0
    for rank, i in enumerate(sorted(range(len(p)), key=p.__getitem__)):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def t_interval(scores: Sequence[float], level: float = 0.95) -> list[float]:
    """The t-interval of the mean of `scores` (one per run): nan with fewer than two, the mean itself
    when they are all alike."""
    values = np.asarray(scores, dtype=float)
    if len(values) < 2:
        return [float("nan"), float("nan")]
    if np.all(values == values[0]):
        return [float(values[0])] * 2
    low, high = scipy.stats.t.interval(level, len(values) - 1, loc=values.mean(), scale=scipy.stats.sem(values))
    return [float(low), float(high)]


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
    """One group's final scores (one per run) -> mean and IQM, each with its 95% stratified-bootstrap
    interval (`mean_ci95`, `iqm_ci95`), and the mean's t-interval (`mean_ci95_t`)."""
    runs = [np.asarray(scores, dtype=float)[:, None]]  # (runs, tasks): one task
    summary = {}
    for name, aggregate in (("mean", metrics.aggregate_mean), ("iqm", metrics.aggregate_iqm)):
        summary[name], summary[f"{name}_ci95"] = interval(aggregate, runs, resamples)
    return summary | {"mean_ci95_t": t_interval(scores)}


def improvement(a: Sequence[float], b: Sequence[float], resamples: int = RLIABLE_RESAMPLES) -> dict[str, object]:
    """P(a run of a scores above a run of b; ties count half), with its 95% stratified-bootstrap CI."""
    pair = [np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[:, None]]
    point, ci = interval(metrics.probability_of_improvement, pair, resamples)
    return {"probability_of_improvement": point, "probability_of_improvement_ci95": ci}
