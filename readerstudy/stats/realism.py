"""How realistic each synthetic image is, adjusted for how easily each reader is fooled.

Raw "fooled" counts depend on which readers saw an image. A penalised Rasch (one-parameter logistic)
model separates the two: for synthetic image i read by reader j,

    logit P(reader j calls image i "real") = mu + a_i + b_j,

with a_i the image's realism and b_j the reader's credulity (a negative b_j = a sharp-eyed reader). The
effects get Gaussian (ridge) penalties sum(a_i^2)/2s^2 + sum(b_j^2)/2s^2 with s = 1 on the logit scale (a
weak prior that keeps images everyone or no one was fooled by finite); mu is unpenalised. The fit is the
penalised maximum likelihood (the posterior mode), found by Newton-Raphson with the image block of the
Hessian (diagonal) eliminated by its Schur complement, so each step costs O(readings + readers^3).

Rasch G (1960), Probabilistic Models for Some Intelligence and Attainment Tests; penalised/ridge form as
in e.g. de Boeck P, Wilson M (2004), Explanatory Item Response Models, ch. 2 (random-effects Rasch model,
here with the mode instead of the integral).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit


@dataclass(frozen=True)
class RaschFit:
    """Fitted penalised Rasch model: intercept, image and reader effects on the logit scale."""

    intercept: float
    image_effects: np.ndarray
    reader_effects: np.ndarray
    iterations: int
    converged: bool


def fit_rasch(
    image: np.ndarray,
    reader: np.ndarray,
    called_real: np.ndarray,
    *,
    n_images: int,
    n_readers: int,
    prior_sd: float = 1.0,
    max_iterations: int = 100,
    tolerance: float = 1e-10,
) -> RaschFit:
    """Penalised maximum-likelihood fit of logit P(called real) = mu + a_image + b_reader (module docstring).

    ``image`` and ``reader`` are integer codes per reading, ``called_real`` 0/1.
    """
    image = np.asarray(image, dtype=np.int64)
    reader = np.asarray(reader, dtype=np.int64)
    y = np.asarray(called_real, dtype=float)
    penalty = 1.0 / prior_sd**2
    if y.size and (y.min() == y.max()):
        # Everyone fooled by everything (or by nothing): the unpenalised intercept's estimate is +-infinity and,
        # by symmetry, every penalised effect is 0. Newton steps would only chase the infinity.
        mu = math.inf if y[0] == 1 else -math.inf
        return RaschFit(mu, np.zeros(n_images), np.zeros(n_readers), 0, True)
    mu = _logit(np.clip(y.mean(), 0.5 / y.size, 1 - 0.5 / y.size)) if y.size else 0.0
    a = np.zeros(n_images)
    b = np.zeros(n_readers)
    converged = False
    iteration = 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 - the count is reported
        p = expit(mu + a[image] + b[reader])
        residual = y - p
        weight = p * (1 - p)
        grad_mu = residual.sum()
        grad_a = np.bincount(image, residual, n_images) - penalty * a
        grad_b = np.bincount(reader, residual, n_readers) - penalty * b
        # Negative Hessian in blocks: [mu, b] (small, dense) and a (diagonal).
        h_aa = np.bincount(image, weight, n_images) + penalty
        h_a_mu = np.bincount(image, weight, n_images)
        h_ab = np.zeros((n_images, n_readers))
        np.add.at(h_ab, (image, reader), weight)
        small = np.zeros((n_readers + 1, n_readers + 1))
        small[0, 0] = weight.sum()
        small[0, 1:] = small[1:, 0] = np.bincount(reader, weight, n_readers)
        small[1:, 1:] += np.diag(np.bincount(reader, weight, n_readers) + penalty)
        cross = np.column_stack([h_a_mu, h_ab])  # images x (1 + readers)
        schur = small - cross.T @ (cross / h_aa[:, None])
        rhs = np.r_[grad_mu, grad_b] - cross.T @ (grad_a / h_aa)
        try:
            step_small = np.linalg.solve(schur, rhs)
        except np.linalg.LinAlgError:
            break  # numerically singular (weights underflowed): report the last iterate as not converged
        step_a = (grad_a - cross @ step_small) / h_aa
        mu += step_small[0]
        b += step_small[1:]
        a += step_a
        if max(abs(step_small).max(initial=0.0), abs(step_a).max(initial=0.0)) < tolerance:
            converged = True
            break
    return RaschFit(float(mu), a, b, iteration, converged)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))
