"""Blinding audit: could a trivial classifier tell real from synthetic cases without looking at anatomy?

Each measured property (of the HTTP response, the served file, its content, the case's place in the reading orders,
the original file) is checked on its own by its AUC for "synthetic" (the Mann-Whitney statistic; 0.5 = no
information) with a DeLong 95% CI, and the properties of one group together by a cross-validated ridge logistic
regression. A property is flagged by an interval, not a point: when its CI excludes 0.5 or its AUC lies outside
0.35-0.65. A study with a flagged property is confounded: readers may be answering from the giveaway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from readerstudy.stats.roc import delong_auc

# A point estimate this far from chance is flagged even when its CI, with few cases, still reaches 0.5.
FLAG_AUC_LOW = 0.35
FLAG_AUC_HIGH = 0.65
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class FeatureSeparation:
    feature: str
    auc: float  # P(feature of a synthetic case > feature of a real case), ties count half
    ci_lower: float  # DeLong 95% CI of the AUC
    ci_upper: float
    real_median: float
    synthetic_median: float
    separates: bool
    n: int = 0  # observations the AUC rests on (cases, or reader-case pairs for order properties)


@dataclass(frozen=True)
class BlindingAudit:
    n_real: int
    n_synthetic: int
    enough_cases: bool
    features: tuple[FeatureSeparation, ...]
    combined: FeatureSeparation | None
    confounded: bool

    @property
    def separating(self) -> tuple[FeatureSeparation, ...]:
        return tuple(f for f in self.features if f.separates)

    @property
    def combined_auc(self) -> float | None:
        return None if self.combined is None else self.combined.auc

    @property
    def most_telling(self) -> FeatureSeparation | None:
        return self.features[0] if self.features else None


def is_flagged(value: float, ci_lower: float, ci_upper: float) -> bool:
    """The audit's rule: the 95% CI excludes 0.5, or the AUC is beyond 0.35 / 0.65."""
    return ci_lower > 0.5 or ci_upper < 0.5 or value < FLAG_AUC_LOW or value > FLAG_AUC_HIGH


def feature_separation(
    name: str, values: Sequence[float], truth: Sequence[int], *, judge: bool = True, negligible: float = 0.0
) -> FeatureSeparation | None:
    """One property's AUC for truth (1 = synthetic) with its DeLong CI; None when a class has no usable value.

    `judge=False` reports without flagging (too few cases). A property whose class medians differ by less than
    `negligible` (in its own unit) is never flagged: a difference nobody can measure is no giveaway.
    """
    x = np.asarray(values, dtype=float)
    y = np.asarray(truth, dtype=int)
    if x.shape != y.shape:
        raise ValueError(f"Feature {name!r} has {x.size} values for {y.size} cases.")
    usable = ~np.isnan(x)
    if len(set(y[usable])) < 2:
        return None
    estimate = delong_auc(y[usable], x[usable])
    real_median = float(np.median(x[usable & (y == 0)]))
    synthetic_median = float(np.median(x[usable & (y == 1)]))
    separates = (
        judge
        and is_flagged(estimate.auc, estimate.ci.lower, estimate.ci.upper)
        and abs(synthetic_median - real_median) >= negligible
    )
    return FeatureSeparation(
        feature=name,
        auc=estimate.auc,
        ci_lower=estimate.ci.lower,
        ci_upper=estimate.ci.upper,
        real_median=real_median,
        synthetic_median=synthetic_median,
        separates=bool(separates),
        n=int(usable.sum()),
    )


def blinding_audit(
    features: Mapping[str, Sequence[float]],
    truth: Sequence[int],
    *,
    min_per_class: int = MIN_PER_CLASS,
    negligible: Mapping[str, float] | None = None,
    combine: bool = True,
    folds: int = 5,
    seed: int = 0,
) -> BlindingAudit:
    """Per-feature AUCs with CIs and a cross-validated combined AUC of the properties for truth (1 = synthetic).

    The study is confounded when any feature, or the combined classifier's out-of-fold scores, is flagged by
    :func:`is_flagged`. AUC: Bamber (1975); CI: DeLong et al. (1988); classifier: ridge-penalised logistic
    regression fitted by Newton-Raphson (IRLS) on standardised features, k-fold cross-validation with a seeded split
    (Hastie, Tibshirani & Friedman 2009, ch. 4.4 and 7.10).
    """
    y = np.asarray(truth, dtype=int)
    n_real, n_synthetic = int((y == 0).sum()), int((y == 1).sum())
    enough = n_real >= min_per_class and n_synthetic >= min_per_class
    negligible = negligible or {}
    rows: list[FeatureSeparation] = []
    columns: list[np.ndarray] = []
    for name, values in features.items():
        row = feature_separation(name, values, y, judge=enough, negligible=negligible.get(name, 0.0))
        if row is None:
            continue
        rows.append(row)
        x = np.asarray(values, dtype=float)
        if not np.isnan(x).any() and np.ptp(x) > 0:
            columns.append(x)
    combined = None
    if combine and enough and columns:
        scores = _cross_validated_scores(np.column_stack(columns), y, folds=folds, seed=seed)
        if scores is not None:
            combined = feature_separation("combined", scores, y, judge=True)
    confounded = enough and (any(row.separates for row in rows) or (combined is not None and combined.separates))
    rows.sort(key=lambda row: -abs(row.auc - 0.5))
    return BlindingAudit(n_real, n_synthetic, enough, tuple(rows), combined, confounded)


def _cross_validated_scores(x: np.ndarray, y: np.ndarray, *, folds: int, seed: int) -> np.ndarray | None:
    rng = np.random.default_rng(seed)
    fold_of = np.empty(y.size, dtype=int)
    for label in (0, 1):  # stratified: each fold gets its share of both classes
        index = np.flatnonzero(y == label)
        rng.shuffle(index)
        fold_of[index] = np.arange(index.size) % folds
    scores = np.empty(y.size)
    for fold in range(folds):
        test = fold_of == fold
        train = ~test
        if len(set(y[train])) < 2 or not test.any():
            return None
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std == 0] = 1
        weights = _ridge_logistic((x[train] - mean) / std, y[train])
        scores[test] = _design((x[test] - mean) / std) @ weights
    return scores


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(x)), x])


def _ridge_logistic(x: np.ndarray, y: np.ndarray, *, penalty: float = 1.0, iterations: int = 50) -> np.ndarray:
    design = _design(x)
    weights = np.zeros(design.shape[1])
    ridge = penalty * np.eye(design.shape[1])
    ridge[0, 0] = 0  # the intercept is not penalised
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (p - y) + ridge @ weights
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return weights
