"""Multi-reader multi-case (MRMC) analysis: the Obuchowski-Rockette (OR) model with jackknife covariances
and Hillis's denominator degrees of freedom, for AUC and for accuracy, sensitivity and specificity.

Notation follows the OR-DBM MRMC program (University of Iowa) and Hillis (2007): t modalities
("treatments"), r readers, theta_ij the figure of merit of reader j in modality i. The error covariance
matrix of the theta_ij is estimated by the jackknife over cases; its averages are Var(error) (diagonal),
Cov1 (same reader, different modality), Cov2 (different reader, same modality), Cov3 (different reader and
modality). Three analyses are reported, as in that program:

* random readers and random cases (results generalise to both populations),
* fixed readers, random cases (only these readers),
* random readers, fixed cases (only these cases).

References: Obuchowski NA, Rockette HE (1995), Commun Stat Simul Comput 24:285; Hillis SL, Obuchowski NA,
Schartz KM, Berbaum KS (2005), Stat Med 24:1579; Hillis SL (2007), Stat Med 26:596; Hillis SL, Berbaum KS,
Metz CE (2008), Acad Radiol 15:647; Hillis SL (2014), Stat Med 33:330 (single-modality analyses).

One job, and so one module despite its length: the Obuchowski-Rockette analysis in all three generalisations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from readerstudy.stats.proportions import Interval
from readerstudy.stats.roc import auc_jackknife
from readerstudy.stats.table import ReadingTable

FIGURES_OF_MERIT = ("auc", "accuracy", "sensitivity", "specificity")
# Chance level of each figure of merit: the single-modality tests ask whether readers beat it. Sensitivity
# and specificity have no fixed chance level on their own (a guesser trades one for the other).
CHANCE_LEVEL = {"auc": 0.5, "accuracy": 0.5, "sensitivity": None, "specificity": None}


@dataclass(frozen=True)
class ReaderFigure:
    """Figure of merit of one reader in one modality."""

    reader: str
    modality: str
    value: float


@dataclass(frozen=True)
class MeanSquares:
    """Mean squares of the modality x reader ANOVA of the figures of merit."""

    modality: float
    reader: float
    modality_reader: float
    reader_per_modality: tuple[float, ...]


@dataclass(frozen=True)
class CovarianceComponents:
    """OR variance components; the covariances are jackknife estimates, the rest ANOVA estimates
    (they can be negative). ``*_per_modality`` are computed from each modality's data alone."""

    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_reader: float
    var_modality_reader: float
    corr1: float
    corr2: float
    corr3: float
    var_error_per_modality: tuple[float, ...]
    cov2_per_modality: tuple[float, ...]


@dataclass(frozen=True)
class GlobalTest:
    """Test that all modalities have the same figure of merit: F (random readers) or chi-square (fixed
    readers) with its degrees of freedom (``df_denominator`` None for chi-square)."""

    statistic_name: str
    statistic: float
    df_numerator: float
    df_denominator: float | None
    p_value: float
    error_term: float


@dataclass(frozen=True)
class ModalityDifference:
    """Difference of reader-averaged figures of merit, modality a minus modality b; ``df`` None = normal."""

    modality_a: str
    modality_b: str
    difference: float
    se: float
    df: float | None
    statistic: float
    p_value: float
    ci: Interval


@dataclass(frozen=True)
class ModalityEstimate:
    """Reader-averaged figure of merit of one modality with its CI; ``statistic``/``p_value`` test it
    against ``null_value`` (chance) when there is one. ``df`` None = normal reference distribution."""

    modality: str
    estimate: float
    se: float
    df: float | None
    ci: Interval
    null_value: float | None
    statistic: float | None
    p_value: float | None


@dataclass(frozen=True)
class ReaderDifference:
    """Fixed-readers analysis of one reader: modality a minus modality b with a normal test."""

    reader: str
    modality_a: str
    modality_b: str
    difference: float
    se: float
    statistic: float
    p_value: float
    ci: Interval


@dataclass(frozen=True)
class ORAnalysis:
    """One of the three OR analyses."""

    test: GlobalTest | None
    differences: tuple[ModalityDifference, ...]
    modalities: tuple[ModalityEstimate, ...]
    reader_differences: tuple[ReaderDifference, ...]


@dataclass(frozen=True)
class MRMCResult:
    """Full OR analysis of one figure of merit."""

    figure_of_merit: str
    readers: tuple[str, ...]
    modalities: tuple[str, ...]
    n_cases: int
    n_positive: int
    n_negative: int
    jackknife_cases: int
    reader_figures: tuple[ReaderFigure, ...]
    modality_means: tuple[float, ...]
    mean_squares: MeanSquares
    covariance: CovarianceComponents
    random_readers_random_cases: ORAnalysis
    fixed_readers_random_cases: ORAnalysis
    random_readers_fixed_cases: ORAnalysis
    notes: tuple[str, ...]


def jackknife_covariance(jackknife: np.ndarray) -> np.ndarray:
    """Jackknife covariance of the figures of merit: (K-1)/K * sum_k (theta_(k) - mean)(theta_(k) - mean)'.

    ``jackknife`` has shape (t, r, K) (leave-one-case-out values); the result has shape (t, r, t, r).
    Efron B (1981), "Nonparametric estimates of standard error", Biometrika 68:589; as used for OR analysis
    by Hillis et al. (2005), section 2.2.
    """
    t, r, k = jackknife.shape
    centred = (jackknife - jackknife.mean(axis=-1, keepdims=True)).reshape(t * r, k)
    covariance = (k - 1) / k * (centred @ centred.T)
    return covariance.reshape(t, r, t, r)


def figure_of_merit_jackknife(
    figure_of_merit: str, ratings: np.ndarray, labels: np.ndarray | None, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Figures of merit (t, r) and leave-one-case-out values (t, r, K') for ratings/labels of shape
    (t, r, K) and case truth (K,).

    AUC uses the DeLong placement update (:func:`readerstudy.stats.roc.auc_jackknife`) over all K cases. The
    proportions are means of a per-case correctness indicator over the cases they depend on (accuracy: all
    cases; sensitivity: positives; specificity: negatives), and the jackknife runs over those cases only:
    leaving out case k gives (n * p - c_k) / (n - 1).
    """
    truth = np.asarray(truth).astype(bool)
    if figure_of_merit == "auc":
        return auc_jackknife(ratings, truth)
    if labels is None:
        raise ValueError(f"{figure_of_merit} needs calls (a label column)")
    correct = (np.asarray(labels).astype(bool) == truth).astype(float)
    subset = {"accuracy": np.ones_like(truth), "sensitivity": truth, "specificity": ~truth}[figure_of_merit]
    correct = correct[..., subset]
    n = correct.shape[-1]
    if n < 2:
        raise ValueError(f"{figure_of_merit} needs at least two cases to jackknife")
    value = correct.mean(axis=-1)
    return value, (n * value[..., None] - correct) / (n - 1)


def or_analysis(
    figures: np.ndarray,
    covariance: np.ndarray,
    *,
    modalities: tuple[str, ...],
    readers: tuple[str, ...],
    alpha: float = 0.05,
    null_value: float | None = None,
) -> tuple[MeanSquares, CovarianceComponents, ORAnalysis, ORAnalysis, ORAnalysis, tuple[str, ...]]:
    """The three OR analyses from figures of merit (t, r) and their error covariance (t, r, t, r).

    Formulas as printed by OR-DBM MRMC 2.51 (Hillis 2007, 2008):

    * random readers/cases: F = MS(T) / [MS(T*R) + r max(Cov2 - Cov3, 0)] with
      ddf_H = [MS(T*R) + r max(Cov2 - Cov3, 0)]^2 / {MS(T*R)^2 / [(t-1)(r-1)]}; difference SE
      sqrt(2/r [...]); single modality SE sqrt([MS(R)_i + r max(Cov2_i, 0)] / r) with
      df = [MS(R)_i + r max(Cov2_i, 0)]^2 / [MS(R)_i^2 / (r-1)];
    * fixed readers: X2 = (t-1) MS(T) / [Var - Cov1 + (r-1) max(Cov2 - Cov3, 0)] on t-1 df; single modality
      SE sqrt([Var_i + (r-1) max(Cov2_i, 0)] / r); per reader SE sqrt(Var_a + Var_b - 2 Cov_ab);
    * fixed cases: F = MS(T) / MS(T*R) on (t-1), (t-1)(r-1) df; single modality SE sqrt(MS(R)_i / r), r-1 df.
    """
    t, r = figures.shape
    notes: list[str] = []
    modality_means = figures.mean(axis=1)
    reader_means = figures.mean(axis=0)
    grand = figures.mean()
    nan = math.nan
    ms_t = r * np.sum((modality_means - grand) ** 2) / (t - 1) if t > 1 else nan
    ms_r = t * np.sum((reader_means - grand) ** 2) / (r - 1) if r > 1 else nan
    residual = figures - modality_means[:, None] - reader_means[None, :] + grand
    ms_tr = np.sum(residual**2) / ((t - 1) * (r - 1)) if t > 1 and r > 1 else nan
    ms_r_i = figures.var(axis=1, ddof=1) if r > 1 else np.full(t, nan)

    flat = covariance.reshape(t * r, t * r)
    modality_of = np.repeat(np.arange(t), r)
    reader_of = np.tile(np.arange(r), t)
    same_modality = modality_of[:, None] == modality_of[None, :]
    same_reader = reader_of[:, None] == reader_of[None, :]
    var_error = float(np.mean(np.diag(flat)))
    cov1 = _mean_or_nan(flat[same_reader & ~same_modality])
    cov2 = _mean_or_nan(flat[~same_reader & same_modality])
    cov3 = _mean_or_nan(flat[~same_reader & ~same_modality])
    var_i = np.array([np.mean(np.diag(covariance[i, :, i, :])) for i in range(t)])
    cov2_i = np.array([_mean_or_nan(covariance[i, :, i, :][~np.eye(r, dtype=bool)]) for i in range(t)])
    var_tr = ms_tr - var_error + cov1 + cov2 - cov3 if t > 1 else nan
    var_r = (ms_r - ms_tr) / t - cov1 + cov3 if t > 1 else ms_r - var_error + cov2
    components = CovarianceComponents(
        var_error=var_error,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        var_reader=float(var_r),
        var_modality_reader=float(var_tr),
        corr1=cov1 / var_error if var_error > 0 else nan,
        corr2=cov2 / var_error if var_error > 0 else nan,
        corr3=cov3 / var_error if var_error > 0 else nan,
        var_error_per_modality=tuple(float(v) for v in var_i),
        cov2_per_modality=tuple(float(v) for v in cov2_i),
    )
    mean_squares = MeanSquares(float(ms_t), float(ms_r), float(ms_tr), tuple(float(v) for v in ms_r_i))
    if r < 2:
        notes.append("one reader: the random-reader analyses are undefined")
    if t < 2:
        notes.append("one modality: no comparison of modalities; single-modality estimates only")

    pairs = list(combinations(range(t), 2))
    shift = max(cov2 - cov3, 0.0) if t > 1 and r > 1 else 0.0

    # Random readers, random cases.
    rrrc_error = ms_tr + r * shift
    rrrc_ddf = _safe_div(rrrc_error**2, ms_tr**2 / ((t - 1) * (r - 1))) if t > 1 and r > 1 else nan
    rrrc = ORAnalysis(
        test=_f_test(ms_t, rrrc_error, t - 1, rrrc_ddf) if t > 1 else None,
        differences=tuple(
            _difference(modalities, a, b, modality_means, math.sqrt(2 / r * rrrc_error), rrrc_ddf, alpha)
            for a, b in pairs
        ),
        modalities=tuple(
            _single(
                modalities[i],
                modality_means[i],
                ms_r_i[i] + r * max(cov2_i[i], 0.0) if r > 1 else nan,
                r,
                _safe_div((ms_r_i[i] + r * max(cov2_i[i], 0.0)) ** 2, ms_r_i[i] ** 2 / (r - 1)) if r > 1 else nan,
                alpha,
                null_value,
            )
            for i in range(t)
        ),
        reader_differences=(),
    )

    # Fixed readers, random cases.
    frrc_error = var_error - cov1 + (r - 1) * shift if t > 1 else nan
    frrc_differences = []
    for a, b in pairs:
        frrc_differences.append(
            _difference(modalities, a, b, modality_means, math.sqrt(max(2 / r * frrc_error, 0.0)), None, alpha)
        )
    reader_differences = []
    for j in range(r):
        for a, b in pairs:
            variance = covariance[a, j, a, j] + covariance[b, j, b, j] - 2 * covariance[a, j, b, j]
            difference = figures[a, j] - figures[b, j]
            se = math.sqrt(max(variance, 0.0))
            z = _safe_div(difference, se)
            z_crit = stats.norm.ppf(1 - alpha / 2)
            reader_differences.append(
                ReaderDifference(
                    reader=readers[j],
                    modality_a=modalities[a],
                    modality_b=modalities[b],
                    difference=float(difference),
                    se=se,
                    statistic=z,
                    p_value=float(2 * stats.norm.sf(abs(z))) if not math.isnan(z) else nan,
                    ci=Interval(float(difference - z_crit * se), float(difference + z_crit * se)),
                )
            )
    frrc = ORAnalysis(
        test=_chi2_test(ms_t, frrc_error, t - 1) if t > 1 else None,
        differences=tuple(frrc_differences),
        modalities=tuple(
            _single(
                modalities[i],
                modality_means[i],
                var_i[i] + (r - 1) * max(cov2_i[i], 0.0) if r > 1 else var_i[i],
                r,
                None,
                alpha,
                null_value,
            )
            for i in range(t)
        ),
        reader_differences=tuple(reader_differences),
    )

    # Random readers, fixed cases.
    rrfc_df = (t - 1) * (r - 1) if t > 1 and r > 1 else nan
    rrfc = ORAnalysis(
        test=_f_test(ms_t, ms_tr, t - 1, rrfc_df) if t > 1 else None,
        differences=tuple(
            _difference(modalities, a, b, modality_means, math.sqrt(2 / r * ms_tr), rrfc_df, alpha) for a, b in pairs
        ),
        modalities=tuple(
            _single(modalities[i], modality_means[i], ms_r_i[i], r, r - 1 if r > 1 else nan, alpha, null_value)
            for i in range(t)
        ),
        reader_differences=(),
    )
    return mean_squares, components, rrrc, frrc, rrfc, tuple(notes)


def mrmc_analysis(table: ReadingTable, figure_of_merit: str = "auc", *, alpha: float = 0.05) -> MRMCResult:
    """OR analysis of ``figure_of_merit`` ("auc", "accuracy", "sensitivity", "specificity") for a table.

    Uses first readings only, and only the cases read by every reader in every modality (the OR model
    needs a fully crossed design); a note says how many cases were left out. AUC is the trapezoidal
    (Wilcoxon) area of the ratings; the proportions use the calls (``label``).
    """
    if figure_of_merit not in FIGURES_OF_MERIT:
        raise ValueError(f"figure_of_merit must be one of {FIGURES_OF_MERIT}, got {figure_of_merit!r}")
    table = table.first_readings()
    ratings, labels, truth, readers, modalities, notes = crossed_arrays(table)
    figures, jackknife = figure_of_merit_jackknife(figure_of_merit, ratings, labels, truth)
    covariance = jackknife_covariance(jackknife)
    ms, components, rrrc, frrc, rrfc, or_notes = or_analysis(
        figures,
        covariance,
        modalities=modalities,
        readers=readers,
        alpha=alpha,
        null_value=CHANCE_LEVEL[figure_of_merit],
    )
    return MRMCResult(
        figure_of_merit=figure_of_merit,
        readers=readers,
        modalities=modalities,
        n_cases=int(truth.size),
        n_positive=int(truth.sum()),
        n_negative=int((~truth.astype(bool)).sum()),
        jackknife_cases=int(jackknife.shape[-1]),
        reader_figures=tuple(
            ReaderFigure(readers[j], modalities[i], float(figures[i, j]))
            for i in range(len(modalities))
            for j in range(len(readers))
        ),
        modality_means=tuple(float(v) for v in figures.mean(axis=1)),
        mean_squares=ms,
        covariance=components,
        random_readers_random_cases=rrrc,
        fixed_readers_random_cases=frrc,
        random_readers_fixed_cases=rrfc,
        notes=notes + or_notes,
    )


def crossed_arrays(
    table: ReadingTable,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Ratings (t, r, K), calls (t, r, K) or None, and case truth (K,) over the cases read by every reader
    in every modality of a table of first readings."""
    readers, modalities = table.readers, table.modalities
    t, r, k = len(modalities), len(readers), len(table.cases)
    ratings = np.full((t, r, k), np.nan)
    ratings[table.modality_index, table.reader_index, table.case_index] = table.rating
    complete = ~np.isnan(ratings).any(axis=(0, 1))
    notes = []
    if not complete.all():
        notes.append(
            f"{int((~complete).sum())} of {k} cases were not read by every reader in every modality and are "
            "left out of this analysis (the OR model needs a fully crossed design)"
        )
    labels = None
    if table.label is not None:
        labels = np.zeros((t, r, k), dtype=np.int8)
        labels[table.modality_index, table.reader_index, table.case_index] = table.label
        labels = labels[..., complete]
    return ratings[..., complete], labels, table.case_truth[complete], readers, modalities, tuple(notes)


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _safe_div(numerator: float, denominator: float) -> float:
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.inf if denominator == 0 and numerator > 0 else math.nan
    return float(numerator / denominator)


def _t_quantile(df: float | None, alpha: float) -> float:
    if df is None or math.isinf(df):
        return float(stats.norm.ppf(1 - alpha / 2))
    if math.isnan(df) or df <= 0:
        return math.nan
    return float(stats.t.ppf(1 - alpha / 2, df))


def _two_sided_p(statistic: float, df: float | None) -> float:
    if math.isnan(statistic):
        return math.nan
    if df is None or math.isinf(df):
        return float(2 * stats.norm.sf(abs(statistic)))
    if math.isnan(df) or df <= 0:
        return math.nan
    return float(2 * stats.t.sf(abs(statistic), df))


def _f_test(ms_t: float, error: float, df1: int, df2: float) -> GlobalTest:
    statistic = _safe_div(ms_t, error)
    if math.isnan(statistic) or math.isnan(df2) or df2 <= 0:
        p_value = math.nan
    elif math.isinf(df2):
        p_value = float(stats.chi2.sf(statistic * df1, df1))
    else:
        p_value = float(stats.f.sf(statistic, df1, df2))
    return GlobalTest("F", statistic, float(df1), float(df2), p_value, float(error))


def _chi2_test(ms_t: float, error: float, df: int) -> GlobalTest:
    statistic = _safe_div(df * ms_t, error)
    p_value = float(stats.chi2.sf(statistic, df)) if not math.isnan(statistic) else math.nan
    return GlobalTest("chi2", statistic, float(df), None, p_value, float(error))


def _difference(
    modalities: tuple[str, ...],
    a: int,
    b: int,
    means: np.ndarray,
    se: float,
    df: float | None,
    alpha: float,
) -> ModalityDifference:
    difference = float(means[a] - means[b])
    statistic = _safe_div(difference, se) if se > 0 else math.nan
    half = _t_quantile(df, alpha) * se
    return ModalityDifference(
        modality_a=modalities[a],
        modality_b=modalities[b],
        difference=difference,
        se=se,
        df=None if df is None else float(df),
        statistic=statistic,
        p_value=_two_sided_p(statistic, df),
        ci=Interval(difference - half, difference + half),
    )


def _single(
    modality: str,
    estimate: float,
    error: float,
    r: int,
    df: float | None,
    alpha: float,
    null_value: float | None,
) -> ModalityEstimate:
    se = math.sqrt(error / r) if error >= 0 else math.nan
    half = _t_quantile(df, alpha) * se
    statistic = p_value = None
    if null_value is not None:
        statistic = _safe_div(estimate - null_value, se) if se > 0 else math.nan
        p_value = _two_sided_p(statistic, df)
    return ModalityEstimate(
        modality=modality,
        estimate=float(estimate),
        se=se,
        df=None if df is None else float(df),
        ci=Interval(float(estimate - half), float(estimate + half)),
        null_value=null_value,
        statistic=statistic,
        p_value=p_value,
    )
