"""Agreement between readers (and of a reader with themself): Cohen's kappa, Fleiss' kappa,
Krippendorff's alpha and intraclass correlations."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from readerstudy.stats.proportions import Interval

KAPPA_WEIGHTS = ("unweighted", "linear", "quadratic")
ALPHA_LEVELS = ("nominal", "ordinal", "interval", "ratio")


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa of two raters: estimate, large-sample SE and CI, and the z test of kappa = 0."""

    kappa: float
    se: float
    ci: Interval
    z: float
    p_value: float
    n: int
    observed_agreement: float
    expected_agreement: float
    weights: str


@dataclass(frozen=True)
class FleissKappaResult:
    """Fleiss' kappa of m raters: z test under the null, jackknife SE and CI over subjects."""

    kappa: float
    se_null: float
    z: float
    p_value: float
    se: float
    ci: Interval
    subjects: int
    raters: int


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha at one level of measurement."""

    alpha: float
    level: str
    units: int
    pairable_values: int
    observed_disagreement: float
    expected_disagreement: float


@dataclass(frozen=True)
class IccResult:
    """One intraclass correlation with its F test (ICC = 0) and exact/approximate CI."""

    form: str
    description: str
    icc: float
    f_value: float
    df1: float
    df2: float
    p_value: float
    ci: Interval


def cohen_kappa(
    rater_a: np.ndarray, rater_b: np.ndarray, *, weights: str = "unweighted", alpha: float = 0.05
) -> KappaResult:
    """Cohen's (weighted) kappa of two raters over the same subjects.

    Cohen J (1960), Educ Psychol Meas 20:37; weighted: Cohen J (1968), Psychol Bull 70:213, with agreement
    weights w = 1 - |x - y| / (max - min) ("linear") or 1 - (x - y)^2 / (max - min)^2 ("quadratic") on the
    numeric category values. Standard errors: Fleiss JL, Cohen J, Everitt BS (1969), Psychol Bull 72:323,
    eq. (13) under the null (for the z test, as irr's kappa2) and eq. (9) otherwise (for the CI).
    """
    if weights not in KAPPA_WEIGHTS:
        raise ValueError(f"weights must be one of {KAPPA_WEIGHTS}, got {weights!r}")
    a = np.asarray(rater_a, dtype=float)
    b = np.asarray(rater_b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = a.size
    if n == 0:
        nan = math.nan
        return KappaResult(nan, nan, Interval(nan, nan), nan, nan, 0, nan, nan, weights)
    categories, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    k = categories.size
    table = np.zeros((k, k))
    np.add.at(table, (codes[:n], codes[n:]), 1.0)
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    w = _agreement_weights(categories, weights)
    observed = float(np.sum(w * p))
    expected = float(np.sum(w * np.outer(row, col)))
    nan = math.nan
    if expected >= 1:
        return KappaResult(nan, nan, Interval(nan, nan), nan, nan, n, observed, expected, weights)
    kappa = (observed - expected) / (1 - expected)
    w_row = w @ col  # weighted mean agreement of row category i with rater b's categories
    w_col = row @ w
    spread = w_row[:, None] + w_col[None, :]
    var_null = (np.sum(np.outer(row, col) * (w - spread) ** 2) - expected**2) / (n * (1 - expected) ** 2)
    var = (np.sum(p * (w - spread * (1 - kappa)) ** 2) - (kappa - expected * (1 - kappa)) ** 2) / (
        n * (1 - expected) ** 2
    )
    se_null = math.sqrt(max(var_null, 0.0))
    se = math.sqrt(max(var, 0.0))
    z = kappa / se_null if se_null > 0 else nan
    z_crit = stats.norm.ppf(1 - alpha / 2)
    return KappaResult(
        kappa=float(kappa),
        se=se,
        ci=Interval(float(kappa - z_crit * se), float(kappa + z_crit * se)),
        z=float(z),
        p_value=float(2 * stats.norm.sf(abs(z))) if not math.isnan(z) else nan,
        n=n,
        observed_agreement=observed,
        expected_agreement=expected,
        weights=weights,
    )


def _agreement_weights(categories: np.ndarray, weights: str) -> np.ndarray:
    if weights == "unweighted" or categories.size < 2:
        return np.eye(categories.size)
    distance = np.abs(categories[:, None] - categories[None, :]) / (categories[-1] - categories[0])
    return 1 - distance if weights == "linear" else 1 - distance**2


def fleiss_kappa(ratings: np.ndarray, *, alpha: float = 0.05) -> FleissKappaResult:
    """Fleiss' kappa for subjects (rows) each rated by the same number m of raters (columns).

    Fleiss JL (1971), Psychol Bull 76:378, eqs. (2)-(9). The z test uses the null variance of Fleiss JL,
    Nee JCM, Landis JR (1979), Psychol Bull 86:974, eq. (12) (as irr's kappam.fleiss). The CI uses the
    jackknife over subjects (Efron 1981), which does not assume kappa = 0. Rows with a missing rating
    (NaN) are dropped, since the method needs equal raters per subject.
    """
    ratings = np.asarray(ratings, dtype=float)
    ratings = ratings[~np.isnan(ratings).any(axis=1)]
    nan = math.nan
    subjects, raters = ratings.shape if ratings.ndim == 2 else (0, 0)
    if subjects < 2 or raters < 2:
        return FleissKappaResult(nan, nan, nan, nan, nan, Interval(nan, nan), subjects, raters)
    _, codes = np.unique(ratings, return_inverse=True)
    codes = codes.reshape(ratings.shape)
    counts = np.zeros((subjects, int(codes.max()) + 1))
    np.add.at(counts, (np.repeat(np.arange(subjects), raters), codes.ravel()), 1.0)
    kappa = _fleiss_from_counts(counts, raters)
    pj = counts.sum(axis=0) / (subjects * raters)
    qj = 1 - pj
    spread = np.sum(pj * qj)
    if spread > 0:
        var_null = 2 / (spread**2 * subjects * raters * (raters - 1)) * (spread**2 - np.sum(pj * qj * (qj - pj)))
        se_null = math.sqrt(var_null)
    else:
        se_null = nan
    z = kappa / se_null if se_null and not math.isnan(se_null) else nan
    # Jackknife over subjects: leaving subject i out only removes its row from two sums.
    agreement = (np.sum(counts**2, axis=1) - raters) / (raters * (raters - 1))
    mean_agreement = (agreement.sum() - agreement) / (subjects - 1)
    shares = (counts.sum(axis=0)[None, :] - counts) / ((subjects - 1) * raters)
    chance = np.sum(shares**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        leave_out = (mean_agreement - chance) / (1 - chance)
    se = math.sqrt((subjects - 1) / subjects * np.sum((leave_out - leave_out.mean()) ** 2))
    z_crit = stats.norm.ppf(1 - alpha / 2)
    return FleissKappaResult(
        kappa=kappa,
        se_null=se_null,
        z=float(z),
        p_value=float(2 * stats.norm.sf(abs(z))) if not math.isnan(z) else nan,
        se=se,
        ci=Interval(kappa - z_crit * se, kappa + z_crit * se),
        subjects=subjects,
        raters=raters,
    )


def _fleiss_from_counts(counts: np.ndarray, raters: int) -> float:
    subjects = counts.shape[0]
    agreement = (np.sum(counts**2, axis=1) - raters) / (raters * (raters - 1))
    pj = counts.sum(axis=0) / (subjects * raters)
    chance = float(np.sum(pj**2))
    if chance >= 1:
        return math.nan
    return float((agreement.mean() - chance) / (1 - chance))


def krippendorff_alpha(data: np.ndarray, *, level: str = "ordinal") -> AlphaResult:
    """Krippendorff's alpha for a coders x units matrix with NaN for missing values.

    Krippendorff K (2011), "Computing Krippendorff's alpha-reliability", Annenberg School for Communication,
    University of Pennsylvania: coincidence matrix o_ck = sum_u (pairs c-k in unit u) / (m_u - 1) over units
    with m_u >= 2 values; alpha = 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck, with the nominal, ordinal
    (d = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2), interval ((c-k)^2) and ratio (((c-k)/(c+k))^2) metrics.
    """
    if level not in ALPHA_LEVELS:
        raise ValueError(f"level must be one of {ALPHA_LEVELS}, got {level!r}")
    data = np.asarray(data, dtype=float)
    values, inverse = np.unique(data[~np.isnan(data)], return_inverse=True)
    codes = np.full(data.shape, -1)
    codes[~np.isnan(data)] = inverse
    v = values.size
    counts = np.zeros((data.shape[1], v))  # units x values
    coder, unit = np.nonzero(codes >= 0)
    np.add.at(counts, (unit, codes[coder, unit]), 1.0)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    nan = math.nan
    if counts.shape[0] == 0 or v == 0:
        return AlphaResult(nan, level, 0, 0, nan, nan)
    weighted = counts / (m - 1)[:, None]
    coincidence = counts.T @ weighted - np.diag(weighted.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    delta = _alpha_metric(values, n_c, level)
    observed = float(np.sum(coincidence * delta) / n)
    expected = float(np.sum(np.outer(n_c, n_c) * delta) / (n * (n - 1)))
    value = 1 - observed / expected if expected > 0 else nan
    return AlphaResult(float(value), level, int(counts.shape[0]), int(n), observed, expected)


def _alpha_metric(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(c + k == 0, 0.0, (c - k) / (c + k))
        return ratio**2
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    i = np.arange(values.size)
    lo, hi = np.minimum.outer(i, i), np.maximum.outer(i, i)
    between = cumulative[hi + 1] - cumulative[lo]  # sum of n_g for g from c to k inclusive
    return (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2


# Perfect agreement (no error variance) makes the F ratios infinite; the results are then inf/NaN, not warnings.
@np.errstate(divide="ignore", invalid="ignore")
def intraclass_correlations(ratings: np.ndarray, *, alpha: float = 0.05) -> tuple[IccResult, ...]:
    """The six intraclass correlations of Shrout & Fleiss for subjects (rows) x raters (columns).

    Shrout PE, Fleiss JL (1979), Psychol Bull 86:420, Table 1 (estimates) and Table 2 / eqs. for the CIs;
    ICC(2,1)'s approximate CI follows Satterthwaite as in McGraw KO, Wong SP (1996), Psychol Methods 1:30,
    Table 7. The same formulas as psych::ICC. Rows with a missing rating are dropped.
    """
    ratings = np.asarray(ratings, dtype=float)
    ratings = ratings[~np.isnan(ratings).any(axis=1)]
    n, k = ratings.shape
    if n < 2 or k < 2:
        return ()
    grand = ratings.mean()
    ss_total = np.sum((ratings - grand) ** 2)
    ss_rows = k * np.sum((ratings.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((ratings.mean(axis=0) - grand) ** 2)
    ms_rows = ss_rows / (n - 1)
    ms_within = (ss_total - ss_rows) / (n * (k - 1))
    ms_cols = ss_cols / (k - 1)
    ms_error = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    q = 1 - alpha / 2

    f1 = ms_rows / ms_within
    df1_1, df2_1 = n - 1, n * (k - 1)
    f1_low = f1 / stats.f.ppf(q, df1_1, df2_1)
    f1_high = f1 * stats.f.ppf(q, df2_1, df1_1)
    icc1 = (ms_rows - ms_within) / (ms_rows + (k - 1) * ms_within)

    f3 = ms_rows / ms_error
    df2_3 = (n - 1) * (k - 1)
    f3_low = f3 / stats.f.ppf(q, n - 1, df2_3)
    f3_high = f3 * stats.f.ppf(q, df2_3, n - 1)
    icc3 = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error)

    icc2 = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n)
    fj = ms_cols / ms_error
    vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    v = vn / vd
    f_upper = stats.f.ppf(q, n - 1, v)
    f_lower = stats.f.ppf(q, v, n - 1)
    icc2_low = n * (ms_rows - f_upper * ms_error) / (f_upper * (k * ms_cols + (k * n - k - n) * ms_error) + n * ms_rows)
    icc2_high = n * (f_lower * ms_rows - ms_error) / (k * ms_cols + (k * n - k - n) * ms_error + n * f_lower * ms_rows)
    icc2k = (ms_rows - ms_error) / (ms_rows + (ms_cols - ms_error) / n)

    p1 = float(stats.f.sf(f1, df1_1, df2_1))
    p3 = float(stats.f.sf(f3, n - 1, df2_3))

    def result(form, description, value, f, d1, d2, p, low, high):
        return IccResult(form, description, float(value), float(f), float(d1), float(d2), p, Interval(low, high))

    return (
        result(
            "ICC(1,1)",
            "one-way random, single rater",
            icc1,
            f1,
            df1_1,
            df2_1,
            p1,
            (f1_low - 1) / (f1_low + k - 1),
            (f1_high - 1) / (f1_high + k - 1),
        ),
        result(
            "ICC(2,1)",
            "two-way random, absolute agreement, single rater",
            icc2,
            f3,
            n - 1,
            df2_3,
            p3,
            icc2_low,
            icc2_high,
        ),
        result(
            "ICC(3,1)",
            "two-way mixed, consistency, single rater",
            icc3,
            f3,
            n - 1,
            df2_3,
            p3,
            (f3_low - 1) / (f3_low + k - 1),
            (f3_high - 1) / (f3_high + k - 1),
        ),
        result(
            "ICC(1,k)",
            "one-way random, mean of k raters",
            1 - 1 / f1,
            f1,
            df1_1,
            df2_1,
            p1,
            1 - 1 / f1_low,
            1 - 1 / f1_high,
        ),
        result(
            "ICC(2,k)",
            "two-way random, absolute agreement, mean of k raters",
            icc2k,
            f3,
            n - 1,
            df2_3,
            p3,
            icc2_low * k / (1 + icc2_low * (k - 1)),
            icc2_high * k / (1 + icc2_high * (k - 1)),
        ),
        result(
            "ICC(3,k)",
            "two-way mixed, consistency, mean of k raters",
            1 - 1 / f3,
            f3,
            n - 1,
            df2_3,
            p3,
            1 - 1 / f3_low,
            1 - 1 / f3_high,
        ),
    )
