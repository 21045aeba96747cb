"""Sample size and power for planning a reader study: the exact binomial test of accuracy against chance, a
single reader's AUC against 0.5 (Hanley-McNeil or Obuchowski variance), and readers x cases for a multi-reader
study from the Obuchowski-Rockette variance components of a pilot (Hillis, Obuchowski & Berbaum 2011)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from readerstudy.stats.mrmc import MRMCResult

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


# -- Readers x cases for a multi-reader study (Obuchowski-Rockette) ----------------------------------------------

PLAN_COMPARISONS = ("chance", "modalities")
PLAN_TARGETS = ("power", "half_width")
# No reader study reads more cases than this; "cases needed" searches up to it.
MAX_PLANNED_CASES = 5_000


@dataclass(frozen=True)
class ORComponents:
    """Obuchowski-Rockette variance components of a pilot study with ``n_cases`` cases: what the sample-size
    method of Hillis, Obuchowski & Berbaum (2011) needs.

    ``var_reader`` (sigma^2_R) and ``var_modality_reader`` (sigma^2_TR) describe how readers differ and do not
    depend on the number of cases. ``var_error`` and ``cov1``..``cov3`` are the error variance and covariances of
    a reader's figure of merit over the pilot's cases; they scale as ``n_cases / K`` for K cases in the same
    mix of classes. A one-modality pilot has no cov1, cov3 or sigma^2_TR (NaN): it plans the test of one
    modality against a fixed value ("chance"); comparing two modalities ("modalities") needs them all.
    """

    n_cases: int
    var_reader: float
    var_error: float
    cov2: float
    var_modality_reader: float = math.nan
    cov1: float = math.nan
    cov3: float = math.nan

    def for_cases(self, n_cases: int) -> ORComponents:
        """The same readers' components for ``n_cases`` cases: the case-dependent parts times pilot / new."""
        scale = self.n_cases / n_cases
        return replace(
            self,
            n_cases=n_cases,
            var_error=self.var_error * scale,
            cov1=self.cov1 * scale,
            cov2=self.cov2 * scale,
            cov3=self.cov3 * scale,
        )

    def missing(self, comparison: str = "chance") -> tuple[str, ...]:
        """Names of the components that ``comparison`` needs and this pilot could not estimate."""
        needed = ("var_reader", "var_error", "cov2")
        if comparison == "modalities":
            needed = ("var_modality_reader", "var_error", "cov1", "cov2", "cov3")
        return tuple(name for name in needed if not math.isfinite(getattr(self, name)))


def or_components(result: MRMCResult) -> ORComponents:
    """The pilot's components from its OR analysis (:func:`readerstudy.stats.mrmc.mrmc_analysis`), for the cases
    that analysis used (those read by every reader)."""
    c = result.covariance
    return ORComponents(
        n_cases=result.n_cases,
        var_reader=c.var_reader,
        var_error=c.var_error,
        cov2=c.cov2,
        var_modality_reader=c.var_modality_reader,
        cov1=c.cov1,
        cov3=c.cov3,
    )


@dataclass(frozen=True)
class PlannedDesign:
    """The expected OR analysis of a planned study with ``readers`` readers and ``cases`` cases.

    ``error_term`` is the expected denominator of the F statistic, ``df`` Hillis's denominator degrees of
    freedom from expected mean squares, ``se`` the expected standard error of the reader-averaged figure of
    merit (of the difference of two modalities for "modalities"), ``half_width`` the expected half-width of its
    1 - alpha confidence interval, and ``power`` that of the two-sided test when the true effect is ``effect``
    (figure of merit minus chance, or the difference of the modalities).
    """

    readers: int
    cases: int
    comparison: str
    effect: float
    alpha: float
    error_term: float
    df: float
    se: float
    half_width: float
    noncentrality: float
    power: float

    @property
    def readings(self) -> int:
        return self.readers * self.cases


def or_planned_design(
    components: ORComponents,
    readers: int,
    cases: int,
    *,
    effect: float,
    alpha: float = 0.05,
    comparison: str = "chance",
) -> PlannedDesign:
    """Power and expected CI half-width of the random-readers, random-cases OR test for ``readers`` x ``cases``,
    by the method of Hillis SL, Obuchowski NA, Berbaum KS (2011), "Power estimation for multireader ROC
    methods: an updated and unified approach", Acad Radiol 18:129-142, as programmed by Hillis SL, Schartz KM
    (2018), J Med Imaging 5:045503, and RJafroc's ``SsPowerGivenJK``.

    The pilot's components are first scaled to K cases (:meth:`ORComponents.for_cases`: Var, Cov1..Cov3 times
    K*/K); negative estimates of sigma^2_R and sigma^2_TR count as zero, negative Cov2 (Cov2 - Cov3) as zero,
    as in the analysis. With J readers and effect d:

    * two modalities: E[MS(T*R)] = sigma^2_TR + Var - Cov1 - max(Cov2 - Cov3, 0), error term
      E = E[MS(T*R)] + J max(Cov2 - Cov3, 0), noncentrality lambda = J d^2 / (2 E), SE = sqrt(2 E / J);
    * one modality against a fixed value (the single-modality OR test of Hillis 2014, Stat Med 33:330, which
      ``mrmc_analysis`` reports): E[MS(R)] = sigma^2_R + Var - max(Cov2, 0), E = E[MS(R)] + J max(Cov2, 0),
      lambda = J d^2 / E, SE = sqrt(E / J);

    and in both, ddf_H = E^2 / (E[MS]^2 / (J - 1)), power = P[F(1, ddf_H; lambda) > F_{1-alpha}(1, ddf_H)],
    half-width = t_{1-alpha/2, ddf_H} SE. At the pilot's own J and K these are the pilot's error term, ddf_H
    and CI half-width.
    """
    grid = _expected_or_test(
        components, np.array([readers]), np.array([cases]), effect=effect, alpha=alpha, comparison=comparison
    )
    error, df, se, half, ncp, power = (float(values[0, 0]) for values in grid)
    return PlannedDesign(int(readers), int(cases), comparison, float(effect), alpha, error, df, se, half, ncp, power)


@dataclass(frozen=True)
class StudyPlan:
    """Planned designs over a grid of readers x cases and the ones that meet a target.

    ``designs[i][j]`` has ``readers[i]`` readers and ``cases[j]`` cases. The target is a power of at least
    ``goal`` ("power") or an expected CI half-width of at most ``goal`` ("half_width"). ``cases_needed[i]`` is
    the fewest cases (up to ``max_cases``) with which ``readers[i]`` readers meet it, None when none do: more
    cases cannot make up for too few readers, since the reader variance does not shrink with cases.
    ``smallest`` is the grid's design that meets the target with the fewest readings (readers x cases), the
    fewer readers on a tie; None when no design in the grid meets it.
    """

    components: ORComponents
    comparison: str
    effect: float
    alpha: float
    target: str
    goal: float
    readers: tuple[int, ...]
    cases: tuple[int, ...]
    designs: tuple[tuple[PlannedDesign, ...], ...]
    cases_needed: tuple[int | None, ...]
    smallest: PlannedDesign | None
    max_cases: int

    def meets(self, design: PlannedDesign) -> bool:
        return _meets(self.target, self.goal, design.power, design.half_width)


def or_study_plan(
    components: ORComponents,
    readers: Sequence[int],
    cases: Sequence[int],
    *,
    effect: float = 0.0,
    target: str = "power",
    goal: float = 0.8,
    alpha: float = 0.05,
    comparison: str = "chance",
    max_cases: int = MAX_PLANNED_CASES,
) -> StudyPlan:
    """Every design of the grid readers x cases by :func:`or_planned_design`, the fewest cases each number of
    readers needs for the target (an exhaustive search over 2..max_cases, which needs no monotonicity), and the
    smallest design of the grid that meets the target."""
    if target not in PLAN_TARGETS:
        raise ValueError(f"target must be one of {PLAN_TARGETS}, got {target!r}")
    readers_array = np.asarray(readers, dtype=int)
    cases_array = np.asarray(cases, dtype=int)
    grid = _expected_or_test(components, readers_array, cases_array, effect=effect, alpha=alpha, comparison=comparison)
    designs = tuple(
        tuple(
            PlannedDesign(
                int(j), int(k), comparison, float(effect), alpha, *(float(values[row, col]) for values in grid)
            )
            for col, k in enumerate(cases_array)
        )
        for row, j in enumerate(readers_array)
    )
    search = np.arange(2, max_cases + 1)
    _, _, _, half, _, power = _expected_or_test(
        components, readers_array, search, effect=effect, alpha=alpha, comparison=comparison
    )
    met = _meets(target, goal, power, half)
    cases_needed = tuple(int(search[row.argmax()]) if row.any() else None for row in met)
    meeting = [d for row in designs for d in row if _meets(target, goal, d.power, d.half_width)]
    smallest = min(meeting, key=lambda d: (d.readings, d.readers)) if meeting else None
    return StudyPlan(
        components=components,
        comparison=comparison,
        effect=float(effect),
        alpha=alpha,
        target=target,
        goal=goal,
        readers=tuple(int(j) for j in readers_array),
        cases=tuple(int(k) for k in cases_array),
        designs=designs,
        cases_needed=cases_needed,
        smallest=smallest,
        max_cases=max_cases,
    )


def _meets(target: str, goal: float, power, half_width):
    return power >= goal if target == "power" else half_width <= goal


def _expected_or_test(
    components: ORComponents,
    readers: np.ndarray,
    cases: np.ndarray,
    *,
    effect: float,
    alpha: float,
    comparison: str,
) -> tuple[np.ndarray, ...]:
    """Error term, ddf_H, SE, CI half-width, noncentrality and power (each of shape readers x cases) by the
    formulas of :func:`or_planned_design`."""
    if comparison not in PLAN_COMPARISONS:
        raise ValueError(f"comparison must be one of {PLAN_COMPARISONS}, got {comparison!r}")
    missing = components.missing(comparison)
    if missing:
        raise ValueError(f"the pilot gives no estimate of {', '.join(missing)}")
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    if components.n_cases < 1 or readers.size == 0 or cases.size == 0:
        raise ValueError("the pilot and the planned study need cases and readers")
    if readers.min() < 2 or cases.min() < 1:
        raise ValueError("a planned study needs at least 2 readers and 1 case")
    j = readers.astype(float)[:, None]
    scale = components.n_cases / cases.astype(float)[None, :]
    if comparison == "modalities":
        shift = max(components.cov2 - components.cov3, 0.0)
        spread = max(components.var_modality_reader, 0.0) + scale * (components.var_error - components.cov1 - shift)
        error = spread + j * scale * shift
        se = np.sqrt(2 * error / j)
        noncentrality = j * effect**2 / (2 * error)
    else:
        shift = max(components.cov2, 0.0)
        spread = max(components.var_reader, 0.0) + scale * (components.var_error - shift)
        error = spread + j * scale * shift
        se = np.sqrt(error / j)
        noncentrality = j * effect**2 / error
    if np.any(error <= 0) or np.any(spread < 0):
        raise ValueError("these components give no positive variance for the reader-averaged figure of merit")
    with np.errstate(divide="ignore"):
        df = np.where(spread > 0, error**2 / (np.square(spread) / (j - 1)), np.inf)
    finite = np.isfinite(df)
    finite_df = np.where(finite, df, 1.0)  # placeholder where the normal limit applies
    critical = np.where(finite, stats.f.ppf(1 - alpha, 1, finite_df), stats.chi2.ppf(1 - alpha, 1))
    # scipy's ncf.sf is wrong at zero noncentrality (it returns -0.95 for 0.05): use the central F there.
    central = np.where(finite, stats.f.sf(critical, 1, finite_df), stats.chi2.sf(critical, 1))
    noncentral = np.where(
        finite,
        stats.ncf.sf(critical, 1, finite_df, noncentrality),
        stats.ncx2.sf(critical, 1, noncentrality),
    )
    power = np.where(noncentrality > 0, noncentral, central)
    quantile = np.where(finite, stats.t.ppf(1 - alpha / 2, finite_df), stats.norm.ppf(1 - alpha / 2))
    half_width = quantile * se
    shape = np.broadcast_shapes(error.shape, (readers.size, cases.size))
    return tuple(np.broadcast_to(values, shape) for values in (error, df, se, half_width, noncentrality, power))
