"""Empirical ROC curves, the trapezoidal (Wilcoxon-Mann-Whitney) AUC and its DeLong variance.

Everything rests on the DeLong placement values: for a positive case, V10 = share of negatives it outranks
(ties count one half); for a negative case, V01 = share of positives that outrank it. The AUC is the mean of
either, the DeLong variance is built from their sample variances, and leaving one case out of the AUC is an
O(1) update (see :func:`auc_jackknife`), which is what makes the MRMC jackknife fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from readerstudy.stats.proportions import Interval


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC operating points, from (0, 0) to (1, 1); ``thresholds[i]`` gives point i by calling
    "synthetic" when rating >= threshold (the first threshold is +inf)."""

    false_positive_fraction: tuple[float, ...]
    true_positive_fraction: tuple[float, ...]
    thresholds: tuple[float, ...]


@dataclass(frozen=True)
class AucEstimate:
    """AUC with its DeLong standard error, normal CI and the z test of AUC = 0.5."""

    auc: float
    se: float
    ci: Interval
    n_positive: int
    n_negative: int
    z_vs_chance: float
    p_vs_chance: float


@dataclass(frozen=True)
class PairedAucTest:
    """DeLong's test of two correlated AUCs measured on the same cases (difference = a - b)."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    ci: Interval
    z: float
    p_value: float


@dataclass(frozen=True)
class Placements:
    """DeLong placement values; leading axes are whatever the ratings had (e.g. modality x reader)."""

    auc: np.ndarray
    positive: np.ndarray  # V10, shape (..., n_positive)
    negative: np.ndarray  # V01, shape (..., n_negative)


def placements(positive_ratings: np.ndarray, negative_ratings: np.ndarray) -> Placements:
    """DeLong placement values from midranks, vectorised over any leading axes.

    DeLong ER, DeLong DM, Clarke-Pearson DL (1988), Biometrics 44:837, section 3 (V10, V01). The count of
    negatives below a positive (ties one half) equals its midrank among all cases minus its midrank among
    positives (Sun X, Xu W (2014), IEEE Signal Process Lett 21:1389, "Fast implementation of DeLong's
    algorithm"), so one rankdata call does the whole job in O(n log n).
    """
    positive_ratings = np.asarray(positive_ratings, dtype=float)
    negative_ratings = np.asarray(negative_ratings, dtype=float)
    n1 = positive_ratings.shape[-1]
    n0 = negative_ratings.shape[-1]
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs at least one positive and one negative case")
    combined = np.concatenate([positive_ratings, negative_ratings], axis=-1)
    rank_all = stats.rankdata(combined, axis=-1)
    rank_positive = stats.rankdata(positive_ratings, axis=-1)
    rank_negative = stats.rankdata(negative_ratings, axis=-1)
    v10 = (rank_all[..., :n1] - rank_positive) / n0
    v01 = 1.0 - (rank_all[..., n1:] - rank_negative) / n1
    return Placements(auc=v10.mean(axis=-1), positive=v10, negative=v01)


def _split(truth: np.ndarray, rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth).astype(bool)
    rating = np.asarray(rating, dtype=float)
    return rating[..., truth], rating[..., ~truth]


def auc(truth: np.ndarray, rating: np.ndarray) -> float:
    """Trapezoidal AUC = Mann-Whitney U / (n1 n0) (Bamber 1975, J Math Psychol 12:387)."""
    positive, negative = _split(truth, rating)
    return float(placements(positive, negative).auc)


def delong_auc(truth: np.ndarray, rating: np.ndarray, *, alpha: float = 0.05) -> AucEstimate:
    """AUC with DeLong's variance, Var = S10/n1 + S01/n0 (DeLong et al. 1988, eq. 2), the normal CI
    AUC +- z * SE clipped to [0, 1] (as pROC's ci.auc with method "delong"), and z = (AUC - 0.5)/SE."""
    positive, negative = _split(truth, rating)
    p = placements(positive, negative)
    n1, n0 = positive.size, negative.size
    variance = _variance(p.positive, n1) / n1 + _variance(p.negative, n0) / n0
    se = math.sqrt(variance)
    z_crit = stats.norm.ppf(1 - alpha / 2)
    value = float(p.auc)
    z = (value - 0.5) / se if se > 0 else math.nan
    return AucEstimate(
        auc=value,
        se=se,
        ci=Interval(max(0.0, value - z_crit * se), min(1.0, value + z_crit * se)),
        n_positive=n1,
        n_negative=n0,
        z_vs_chance=z,
        p_vs_chance=float(2 * stats.norm.sf(abs(z))) if se > 0 else math.nan,
    )


def delong_paired_test(
    truth: np.ndarray, rating_a: np.ndarray, rating_b: np.ndarray, *, alpha: float = 0.05
) -> PairedAucTest:
    """DeLong's test of two AUCs on the same cases: z = (A - B) / sqrt(L S L'), with
    S = S10/n1 + S01/n0 the covariance matrix of the two AUCs (DeLong et al. 1988, eq. 5; pROC's roc.test)."""
    positive_a, negative_a = _split(truth, rating_a)
    positive_b, negative_b = _split(truth, rating_b)
    p = placements(np.stack([positive_a, positive_b]), np.stack([negative_a, negative_b]))
    n1, n0 = positive_a.size, negative_a.size
    s10 = np.cov(p.positive) if n1 > 1 else np.full((2, 2), np.nan)
    s01 = np.cov(p.negative) if n0 > 1 else np.full((2, 2), np.nan)
    covariance = s10 / n1 + s01 / n0
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(p.auc[0] - p.auc[1])
    se = math.sqrt(max(variance, 0.0))
    z_crit = stats.norm.ppf(1 - alpha / 2)
    if se > 0:
        z = difference / se
        p_value = float(2 * stats.norm.sf(abs(z)))
    else:
        # Identical ratings: no difference and no variance; pROC reports Z = 0, p = 1.
        z, p_value = (0.0, 1.0) if difference == 0 else (math.nan, math.nan)
    return PairedAucTest(
        auc_a=float(p.auc[0]),
        auc_b=float(p.auc[1]),
        difference=difference,
        se=se,
        ci=Interval(difference - z_crit * se, difference + z_crit * se),
        z=z,
        p_value=p_value,
    )


def roc_curve(truth: np.ndarray, rating: np.ndarray) -> RocCurve:
    """Empirical ROC: one operating point per distinct rating, calling "synthetic" at rating >= threshold."""
    truth = np.asarray(truth).astype(bool)
    rating = np.asarray(rating, dtype=float)
    n1 = int(truth.sum())
    n0 = truth.size - n1
    order = np.argsort(-rating, kind="stable")
    sorted_rating = rating[order]
    sorted_truth = truth[order]
    true_positives = np.cumsum(sorted_truth)
    false_positives = np.cumsum(~sorted_truth)
    # The last row of each block of equal ratings is the operating point at that threshold.
    last = np.r_[sorted_rating[1:] != sorted_rating[:-1], True]
    tpf = np.r_[0.0, true_positives[last] / n1] if n1 else np.full(last.sum() + 1, np.nan)
    fpf = np.r_[0.0, false_positives[last] / n0] if n0 else np.full(last.sum() + 1, np.nan)
    thresholds = np.r_[np.inf, sorted_rating[last]]
    return RocCurve(
        false_positive_fraction=tuple(float(v) for v in fpf),
        true_positive_fraction=tuple(float(v) for v in tpf),
        thresholds=tuple(float(v) for v in thresholds),
    )


def auc_jackknife(ratings: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their leave-one-case-out values for ratings of shape (..., n_cases), without recomputation.

    Leaving out positive case i gives (n1 * AUC - V10_i) / (n1 - 1); leaving out negative case j gives
    (n0 * AUC - V01_j) / (n0 - 1) (the U statistic loses exactly that case's n0 or n1 pair comparisons).
    Returns ``(auc, jackknife)`` with ``jackknife[..., k]`` the AUC without case k.
    """
    truth = np.asarray(truth).astype(bool)
    ratings = np.asarray(ratings, dtype=float)
    p = placements(ratings[..., truth], ratings[..., ~truth])
    n1, n0 = int(truth.sum()), int((~truth).sum())
    if n1 < 2 or n0 < 2:
        raise ValueError("the jackknife needs at least two positive and two negative cases")
    area = p.auc[..., None]
    jackknife = np.empty(ratings.shape, dtype=float)
    jackknife[..., truth] = (n1 * area - p.positive) / (n1 - 1)
    jackknife[..., ~truth] = (n0 * area - p.negative) / (n0 - 1)
    return p.auc, jackknife


def _variance(values: np.ndarray, n: int) -> float:
    return float(np.var(values, ddof=1)) if n > 1 else math.nan
