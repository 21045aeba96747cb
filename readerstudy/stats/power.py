"""Sample size and power for planning a reader study: the exact binomial test of accuracy against chance,
and a single reader's AUC against 0.5 (Hanley-McNeil or Obuchowski variance)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

AUC_VARIANCE_METHODS = ("obuchowski", "hanley_mcneil")


@dataclass(frozen=True)
class BinomialPlan:
    """Smallest number of readings for which the exact test of accuracy = ``null`` reaches ``power``."""

    n: int
    power: float
    alternative_accuracy: float
    null_accuracy: float
    alpha: float
    critical_low: int
    critical_high: int


@dataclass(frozen=True)
class AucPlan:
    """Smallest numbers of synthetic (positive) and real (negative) cases for a one-reader AUC test."""

    n_positive: int
    n_negative: int
    power: float
    alternative_auc: float
    null_auc: float
    alpha: float
    method: str


def binomial_rejection_region(n: int, *, null: float = 0.5, alpha: float = 0.05) -> tuple[int, int]:
    """Critical counts (low, high) of the exact two-sided binomial test at level alpha: reject when
    successes <= low or >= high. The two-sided p-value sums the outcomes no more probable than the
    observed one (as scipy.stats.binomtest and R's binom.test), so the region is {k : p(k) <= alpha}."""
    k = np.arange(n + 1)
    pmf = stats.binom.pmf(k, n, null)
    # p(k) = sum of pmf over outcomes with pmf <= pmf[k] (scipy's relative tolerance for ties).
    order = np.argsort(pmf, kind="stable")
    sorted_pmf = pmf[order]
    cumulative = np.cumsum(sorted_pmf)
    position = np.searchsorted(sorted_pmf, pmf * (1 + 1e-7), side="right") - 1
    p_values = np.minimum(cumulative[position], 1.0)
    reject = p_values <= alpha
    below = k[reject & (k <= n * null)]
    above = k[reject & (k >= n * null)]
    return (int(below.max()) if below.size else -1, int(above.min()) if above.size else n + 1)


def binomial_power(n: int, accuracy: float, *, null: float = 0.5, alpha: float = 0.05) -> float:
    """Power of the exact two-sided binomial test of accuracy = ``null`` with n readings when the true
    accuracy is ``accuracy`` (sum of binomial probabilities over the rejection region)."""
    low, high = binomial_rejection_region(n, null=null, alpha=alpha)
    return float(stats.binom.cdf(low, n, accuracy) + stats.binom.sf(high - 1, n, accuracy))


def binomial_sample_size(
    accuracy: float, *, power: float = 0.8, null: float = 0.5, alpha: float = 0.05, max_n: int = 100_000
) -> BinomialPlan:
    """Smallest n whose exact test reaches ``power`` (Chernick MR, Liu CY (2002), Am Stat 56:149, on the
    saw-toothed power of exact binomial tests: a slightly larger n can have lower power, so the plan
    reports the power actually reached). The search starts below the normal-approximation size."""
    if not 0 < accuracy < 1 or accuracy == null:
        raise ValueError("accuracy must lie in (0, 1) and differ from the null value")
    z_alpha, z_beta = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    approximate = (z_alpha * math.sqrt(null * (1 - null)) + z_beta * math.sqrt(accuracy * (1 - accuracy))) ** 2 / (
        accuracy - null
    ) ** 2
    n = max(1, int(approximate * 0.7))
    while n <= max_n:
        reached = binomial_power(n, accuracy, null=null, alpha=alpha)
        if reached >= power:
            # The normal approximation may overshoot: step back while smaller n still reach the target.
            while n > 1 and binomial_power(n - 1, accuracy, null=null, alpha=alpha) >= power:
                n -= 1
                reached = binomial_power(n, accuracy, null=null, alpha=alpha)
            low, high = binomial_rejection_region(n, null=null, alpha=alpha)
            return BinomialPlan(n, reached, accuracy, null, alpha, low, high)
        n += 1
    raise ValueError(f"no n up to {max_n} reaches power {power}")


def auc_variance_hanley_mcneil(auc: float, n_positive: int, n_negative: int) -> float:
    """Hanley JA, McNeil BJ (1982), Radiology 143:29, eq. (2):
    Var = [A(1-A) + (n1-1)(Q1-A^2) + (n0-1)(Q2-A^2)] / (n1 n0), with Q1 = A/(2-A), Q2 = 2A^2/(1+A)."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    numerator = auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)
    return numerator / (n_positive * n_negative)


def auc_variance_obuchowski(auc: float, n_positive: int, n_negative: int) -> float:
    """Obuchowski NA (1994), Acad Radiol 1:77; (1998) Stat Methods Med Res 7:371, eq. (4): for a binormal
    ROC curve with equal variances, Var = 0.0099 exp(-a^2/2) [(5a^2 + 8) + (a^2 + 8)/kappa] / n1 with
    a = 1.414 Phi^-1(A) and kappa = n0 / n1."""
    a = 1.414 * stats.norm.ppf(auc)
    kappa = n_negative / n_positive
    return 0.0099 * math.exp(-(a**2) / 2) * ((5 * a**2 + 8) + (a**2 + 8) / kappa) / n_positive


def auc_power(
    auc: float,
    n_positive: int,
    n_negative: int,
    *,
    null_auc: float = 0.5,
    alpha: float = 0.05,
    method: str = "obuchowski",
) -> float:
    """Power of the two-sided z test of AUC = ``null_auc`` (Obuchowski 1998, eq. 1):
    Phi[(|A1 - A0| - z_{alpha/2} sqrt(V0)) / sqrt(V1)], with V0, V1 the variances under the null and the
    alternative."""
    variance = _variance_function(method)
    v0 = variance(null_auc, n_positive, n_negative)
    v1 = variance(auc, n_positive, n_negative)
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf((abs(auc - null_auc) - z_alpha * math.sqrt(v0)) / math.sqrt(v1)))


def auc_sample_size(
    auc: float,
    *,
    power: float = 0.8,
    null_auc: float = 0.5,
    alpha: float = 0.05,
    negatives_per_positive: float = 1.0,
    method: str = "obuchowski",
    max_n: int = 1_000_000,
) -> AucPlan:
    """Smallest numbers of positive and negative cases (n0 = ceil(kappa n1)) whose single-reader AUC test
    reaches ``power``: the smallest n1 with z_{alpha/2} sqrt(V0) + z_beta sqrt(V1) <= |A1 - A0|
    (Obuchowski 1998, eq. 1), by bisection since Hanley-McNeil's V is not exactly proportional to 1/n1."""
    if not 0 < auc < 1 or auc == null_auc:
        raise ValueError("auc must lie in (0, 1) and differ from the null value")
    _variance_function(method)

    def negatives(n1: int) -> int:
        return max(1, math.ceil(negatives_per_positive * n1 - 1e-9))

    def reached(n1: int) -> float:
        return auc_power(auc, n1, negatives(n1), null_auc=null_auc, alpha=alpha, method=method)

    low, high = 1, 2
    while reached(high) < power:
        low, high = high, high * 2
        if high > max_n:
            raise ValueError(f"no n up to {max_n} reaches power {power}")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) >= power else (middle, high)
    n1 = low if reached(low) >= power else high
    return AucPlan(n1, negatives(n1), reached(n1), auc, null_auc, alpha, method)


def _variance_function(method: str):
    if method == "obuchowski":
        return auc_variance_obuchowski
    if method == "hanley_mcneil":
        return auc_variance_hanley_mcneil
    raise ValueError(f"method must be one of {AUC_VARIANCE_METHODS}, got {method!r}")
