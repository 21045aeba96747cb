"""Binary decisions ("real" / "synthetic" calls): confusion matrices, proportions with exact and score
confidence intervals, the exact binomial test against chance and Fisher's exact test of call vs truth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    lower: float
    upper: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower", float(self.lower))
        object.__setattr__(self, "upper", float(self.upper))


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``trials`` with Wilson and Clopper-Pearson intervals (NaN when trials is 0)."""

    successes: int
    trials: int
    estimate: float
    wilson: Interval
    clopper_pearson: Interval


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of calls against truth; "synthetic" is the positive class."""

    true_positive: int
    false_negative: int
    true_negative: int
    false_positive: int

    @property
    def positives(self) -> int:
        return self.true_positive + self.false_negative

    @property
    def negatives(self) -> int:
        return self.true_negative + self.false_positive

    @property
    def total(self) -> int:
        return self.positives + self.negatives


@dataclass(frozen=True)
class BinomialTest:
    """Exact two-sided binomial test of ``successes``/``trials`` against ``null_proportion``."""

    successes: int
    trials: int
    null_proportion: float
    p_value: float


@dataclass(frozen=True)
class FisherTest:
    """Fisher's exact test of independence of call and truth in the 2x2 table (two-sided)."""

    odds_ratio: float
    p_value: float


@dataclass(frozen=True)
class BinaryMetrics:
    """Everything computed from one confusion matrix."""

    confusion: ConfusionMatrix
    accuracy: Proportion
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    balanced_accuracy: float
    balanced_accuracy_ci: Interval
    accuracy_vs_chance: BinomialTest
    fisher: FisherTest


def wilson_interval(successes: int, trials: int, *, alpha: float = 0.05) -> Interval:
    """Wilson score interval without continuity correction.

    Wilson EB (1927), "Probable inference, the law of succession, and statistical inference", JASA 22:209,
    as recommended by Brown, Cai & DasGupta (2001), Stat Sci 16:101, eq. (4).
    """
    if trials == 0:
        return Interval(math.nan, math.nan)
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson_interval(successes: int, trials: int, *, alpha: float = 0.05) -> Interval:
    """Clopper-Pearson "exact" interval from beta quantiles.

    Clopper CJ, Pearson ES (1934), "The use of confidence or fiducial limits illustrated in the case of the
    binomial", Biometrika 26:404; beta form as in Brown, Cai & DasGupta (2001), section 2.1.
    """
    if trials == 0:
        return Interval(math.nan, math.nan)
    lower = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return Interval(lower, upper)


def proportion(successes: int, trials: int, *, alpha: float = 0.05) -> Proportion:
    """A proportion with its Wilson and Clopper-Pearson intervals."""
    estimate = successes / trials if trials else math.nan
    return Proportion(
        successes=int(successes),
        trials=int(trials),
        estimate=estimate,
        wilson=wilson_interval(successes, trials, alpha=alpha),
        clopper_pearson=clopper_pearson_interval(successes, trials, alpha=alpha),
    )


def binomial_test(successes: int, trials: int, *, null_proportion: float = 0.5) -> BinomialTest:
    """Exact two-sided binomial test; the two-sided p sums the outcomes no more likely than the observed one.

    Method of scipy.stats.binomtest (and R's binom.test); e.g. Agresti (2013), Categorical Data Analysis,
    section 1.4.
    """
    p_value = math.nan if trials == 0 else float(stats.binomtest(successes, trials, null_proportion).pvalue)
    return BinomialTest(int(successes), int(trials), float(null_proportion), p_value)


def fisher_test(confusion: ConfusionMatrix) -> FisherTest:
    """Fisher's exact test on [[TP, FN], [FP, TN]]; the odds ratio is the sample (cross-product) ratio.

    Fisher RA (1935), "The logic of inductive inference", JRSS 98:39; two-sided p as in R's fisher.test
    (sum of tables no more probable than the observed one), computed by scipy.stats.fisher_exact.
    """
    table = [
        [confusion.true_positive, confusion.false_negative],
        [confusion.false_positive, confusion.true_negative],
    ]
    if confusion.positives == 0 or confusion.negatives == 0:
        return FisherTest(math.nan, math.nan)
    odds_ratio, p_value = stats.fisher_exact(table)
    return FisherTest(float(odds_ratio), float(p_value))


def confusion_matrix(truth: np.ndarray, label: np.ndarray) -> ConfusionMatrix:
    """Counts of (truth, call) pairs; both arrays hold 0 (real) / 1 (synthetic)."""
    truth = np.asarray(truth, dtype=bool)
    label = np.asarray(label, dtype=bool)
    return ConfusionMatrix(
        true_positive=int(np.count_nonzero(truth & label)),
        false_negative=int(np.count_nonzero(truth & ~label)),
        true_negative=int(np.count_nonzero(~truth & ~label)),
        false_positive=int(np.count_nonzero(~truth & label)),
    )


def binary_metrics(confusion: ConfusionMatrix, *, alpha: float = 0.05) -> BinaryMetrics:
    """Accuracy, sensitivity, specificity, PPV, NPV (Wilson and Clopper-Pearson CIs), balanced accuracy,
    the exact binomial test of accuracy against 0.5 and Fisher's exact test.

    Balanced accuracy (sensitivity + specificity) / 2 gets a Wald interval from the two independent binomial
    variances, Var = [Se(1-Se)/n1 + Sp(1-Sp)/n0] / 4 (delta method), clipped to [0, 1].
    """
    c = confusion
    sensitivity = proportion(c.true_positive, c.positives, alpha=alpha)
    specificity = proportion(c.true_negative, c.negatives, alpha=alpha)
    balanced = (sensitivity.estimate + specificity.estimate) / 2
    if c.positives and c.negatives:
        se, sp = sensitivity.estimate, specificity.estimate
        half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(
            (se * (1 - se) / c.positives + sp * (1 - sp) / c.negatives) / 4
        )
        balanced_ci = Interval(max(0.0, balanced - half), min(1.0, balanced + half))
    else:
        balanced_ci = Interval(math.nan, math.nan)
    correct = c.true_positive + c.true_negative
    return BinaryMetrics(
        confusion=c,
        accuracy=proportion(correct, c.total, alpha=alpha),
        sensitivity=sensitivity,
        specificity=specificity,
        ppv=proportion(c.true_positive, c.true_positive + c.false_positive, alpha=alpha),
        npv=proportion(c.true_negative, c.true_negative + c.false_negative, alpha=alpha),
        balanced_accuracy=balanced,
        balanced_accuracy_ci=balanced_ci,
        accuracy_vs_chance=binomial_test(correct, c.total),
        fisher=fisher_test(c),
    )
