"""Blinding audit: could a trivial classifier tell real from synthetic cases without looking at anatomy?

Each recorded property of a case (served file size, intensity statistics, black border, sharpness, the original's
dimensions and format, burned-in text found by cleanup) is checked on its own by its AUC for "synthetic" (the
Mann-Whitney statistic; 0.5 = no information), and all of them together by a cross-validated ridge logistic
regression. A study whose classes are separable this way is confounded: readers may be answering from the
giveaway, not from the anatomy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from readerstudy.stats.roc import auc

SEPARATION_AUC = 0.75
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class FeatureSeparation:
    feature: str
    auc: float  # P(feature of a synthetic case > feature of a real case), ties count half
    real_median: float
    synthetic_median: float
    separates: bool


@dataclass(frozen=True)
class BlindingAudit:
    n_real: int
    n_synthetic: int
    enough_cases: bool
    features: tuple[FeatureSeparation, ...]
    combined_auc: float | None
    confounded: bool

    @property
    def separating(self) -> tuple[FeatureSeparation, ...]:
        return tuple(f for f in self.features if f.separates)


def blinding_audit(
    features: Mapping[str, Sequence[float]],
    truth: Sequence[int],
    *,
    threshold: float = SEPARATION_AUC,
    min_per_class: int = MIN_PER_CLASS,
    folds: int = 5,
    seed: int = 0,
) -> BlindingAudit:
    """Per-feature AUCs and a cross-validated combined AUC of the case properties for truth (1 = synthetic).

    A feature "separates" when its AUC is at least `threshold` or at most 1 - `threshold`; the study is confounded
    when any feature separates or the combined classifier's out-of-fold AUC reaches `threshold`. AUC: Bamber
    (1975); classifier: ridge-penalised logistic regression fitted by Newton-Raphson (IRLS) on standardised
    features, k-fold cross-validation with a seeded split (Hastie, Tibshirani & Friedman 2009, ch. 4.4 and 7.10).
    """
    y = np.asarray(truth, dtype=int)
    n_real, n_synthetic = int((y == 0).sum()), int((y == 1).sum())
    enough = n_real >= min_per_class and n_synthetic >= min_per_class
    rows: list[FeatureSeparation] = []
    columns: list[np.ndarray] = []
    for name, values in features.items():
        x = np.asarray(values, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"Feature {name!r} has {x.size} values for {y.size} cases.")
        usable = ~np.isnan(x)
        if n_real == 0 or n_synthetic == 0 or len(set(y[usable])) < 2:
            continue
        value = auc(y[usable], x[usable])
        rows.append(
            FeatureSeparation(
                feature=name,
                auc=value,
                real_median=float(np.median(x[usable & (y == 0)])),
                synthetic_median=float(np.median(x[usable & (y == 1)])),
                separates=enough and max(value, 1 - value) >= threshold,
            )
        )
        if usable.all() and np.ptp(x) > 0:
            columns.append(x)
    combined = None
    if enough and columns:
        combined = _cross_validated_auc(np.column_stack(columns), y, folds=folds, seed=seed)
    confounded = enough and (any(row.separates for row in rows) or (combined is not None and combined >= threshold))
    rows.sort(key=lambda row: -abs(row.auc - 0.5))
    return BlindingAudit(n_real, n_synthetic, enough, tuple(rows), combined, confounded)


def _cross_validated_auc(x: np.ndarray, y: np.ndarray, *, folds: int, seed: int) -> float:
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
            return math.nan
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std == 0] = 1
        weights = _ridge_logistic((x[train] - mean) / std, y[train])
        scores[test] = _design((x[test] - mean) / std) @ weights
    return auc(y, scores)


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
