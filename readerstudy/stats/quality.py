"""Image-quality scores (anatomy, style, artifacts; 1-5, higher = better) and reading times: distributions,
real-vs-synthetic comparisons with effect sizes, and median/IQR summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class ScoreDistribution:
    """Summary of a set of scores; ``counts`` are for the score values in ``values``."""

    n: int
    mean: float
    sd: float
    median: float
    q1: float
    q3: float
    values: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class MannWhitneyComparison:
    """Mann-Whitney U test of group x against group y with two effect sizes.

    ``common_language`` = P(X > Y) + P(X = Y)/2 (McGraw & Wong 1992), ``rank_biserial`` = 2 CL - 1
    (Kerby 2014); both > 0.5 / > 0 when x tends to score higher.
    """

    n_x: int
    n_y: int
    u_statistic: float
    p_value: float
    common_language: float
    rank_biserial: float


@dataclass(frozen=True)
class TimeSummary:
    """Median and interquartile range of reading times in seconds."""

    n: int
    median: float
    q1: float
    q3: float


def score_distribution(scores: np.ndarray, *, levels: tuple[float, ...] | None = None) -> ScoreDistribution:
    """Mean, SD (n-1), median, quartiles (linear interpolation, numpy's default = R type 7) and counts."""
    scores = np.asarray(scores, dtype=float)
    scores = scores[~np.isnan(scores)]
    if levels is None:
        levels = tuple(float(v) for v in np.unique(scores))
    counts = tuple(int(np.count_nonzero(scores == level)) for level in levels)
    if scores.size == 0:
        nan = math.nan
        return ScoreDistribution(0, nan, nan, nan, nan, nan, levels, counts)
    q1, median, q3 = np.percentile(scores, [25, 50, 75])
    return ScoreDistribution(
        n=int(scores.size),
        mean=float(scores.mean()),
        sd=float(scores.std(ddof=1)) if scores.size > 1 else math.nan,
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        values=levels,
        counts=counts,
    )


def mann_whitney(x: np.ndarray, y: np.ndarray) -> MannWhitneyComparison:
    """Two-sided Mann-Whitney U test (normal approximation with tie and continuity correction, as
    scipy.stats.mannwhitneyu / R's wilcox.test with ties) and its effect sizes.

    Mann HB, Whitney DR (1947), Ann Math Stat 18:50. Effect sizes: McGraw KO, Wong SP (1992), Psychol Bull
    111:361 (common-language effect size); Kerby DS (2014), Compr Psychol 3:11 (rank-biserial r).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    nan = math.nan
    if x.size == 0 or y.size == 0:
        return MannWhitneyComparison(int(x.size), int(y.size), nan, nan, nan, nan)
    if np.ptp(np.concatenate([x, y])) == 0:
        return MannWhitneyComparison(int(x.size), int(y.size), x.size * y.size / 2, 1.0, 0.5, 0.0)
    result = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
    common_language = float(result.statistic) / (x.size * y.size)
    return MannWhitneyComparison(
        n_x=int(x.size),
        n_y=int(y.size),
        u_statistic=float(result.statistic),
        p_value=float(result.pvalue),
        common_language=common_language,
        rank_biserial=2 * common_language - 1,
    )


def share_at_least_median(synthetic: np.ndarray, real: np.ndarray) -> float:
    """Share of synthetic images whose score is at least the median score of the real images.

    The inputs are per-image scores (e.g. each image's mean over readers); about one half is what
    indistinguishable quality gives.
    """
    synthetic = np.asarray(synthetic, dtype=float)
    real = np.asarray(real, dtype=float)
    synthetic, real = synthetic[~np.isnan(synthetic)], real[~np.isnan(real)]
    if synthetic.size == 0 or real.size == 0:
        return math.nan
    return float(np.mean(synthetic >= np.median(real)))


def time_summary(seconds: np.ndarray) -> TimeSummary:
    """Median and quartiles (numpy's linear interpolation) of the non-missing times."""
    seconds = np.asarray(seconds, dtype=float)
    seconds = seconds[~np.isnan(seconds)]
    if seconds.size == 0:
        return TimeSummary(0, math.nan, math.nan, math.nan)
    q1, median, q3 = np.percentile(seconds, [25, 50, 75])
    return TimeSummary(int(seconds.size), float(median), float(q1), float(q3))
