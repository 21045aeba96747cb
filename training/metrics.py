"""Sample-quality metrics over feature arrays: FID (with bootstrap interval and FID-infinity), KID and PRDC.

Plain numpy/scipy, no Django, no torch. Every function takes features already extracted (for example Inception
pool3 activations), as float arrays of shape (n, d), and returns a float or a small frozen dataclass. All
arithmetic is in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg

# Rows per block when computing pairwise distances: a (chunk, n) float64 block of 1,000 x 10,000 is 80 MB.
DISTANCE_CHUNK_ROWS = 1000


@dataclass(frozen=True)
class KidEstimate:
    """KID: mean of the unbiased MMD^2 estimates over ``n_subsets`` subsets, and its standard error."""

    value: float
    se: float
    n_subsets: int
    subset_size: int


@dataclass(frozen=True)
class FidEstimate:
    """FID of the full sets, with a percentile-bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int


@dataclass(frozen=True)
class FidInfinity:
    """FID extrapolated to infinitely many samples: the intercept of the line FID_N = value + slope / N."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    fids: tuple[float, ...]


@dataclass(frozen=True)
class PRDC:
    """Precision, recall, density and coverage (Naeem et al. 2020)."""

    precision: float
    recall: float
    density: float
    coverage: float


def _features(x: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array, got shape {array.shape}.")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {array.shape[0]}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _feature_pair(a: np.ndarray, b: np.ndarray, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a = _features(a, "a", min_rows)
    b = _features(b, "b", min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature dimensions differ: {a.shape[1]} and {b.shape[1]}.")
    return a, b


def _mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased (n - 1) covariance, as pytorch-fid computes them (``np.cov(rowvar=False)``)."""
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) for symmetric positive semi-definite S1, S2.

    S1 S2 is similar to the symmetric PSD matrix S1^{1/2} S2 S1^{1/2} (conjugate by S1^{1/2} when S1 is
    invertible; by continuity otherwise), so both have the same non-negative eigenvalues and the trace of the
    square root is the sum of their square roots. S1^{1/2} comes from ``eigh``, negative round-off eigenvalues
    are clipped to 0. This avoids ``scipy.linalg.sqrtm`` of a non-symmetric matrix (and its complex round-off).
    """
    eigvals, eigvecs = linalg.eigh(sigma1)
    sqrt1 = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T
    middle = sqrt1 @ sigma2 @ sqrt1
    middle = (middle + middle.T) / 2.0
    return float(np.sqrt(np.clip(linalg.eigvalsh(middle), 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, S1) and N(mu2, S2), in float64.

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})  (Dowson & Landau 1982, eq. 2; used as FID by
    Heusel et al. 2017, "GANs trained by a two time-scale update rule...", eq. 6). The trace of the matrix
    square root is taken from the eigenvalues of S1^{1/2} S2 S1^{1/2}, see ``_trace_sqrt_product``.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"Shapes do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}."
        )
    sigma1 = (sigma1 + sigma1.T) / 2.0
    sigma2 = (sigma2 + sigma2.T) / 2.0
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * _trace_sqrt_product(sigma1, sigma2)
    # Round-off can push an exact 0 slightly below; the true distance is never negative.
    return max(float(value), 0.0)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID (Heusel et al. 2017, eq. 6): the Fréchet distance between Gaussians fitted to two feature sets
    (sample mean, unbiased covariance)."""
    a, b = _feature_pair(a, b)
    return frechet_distance(*_mean_cov(a), *_mean_cov(b))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, the KID kernel (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 5)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, "A kernel two-sample test", eq. 3; Binkowski et al. 2018, eq. 2):
    within-set kernel means exclude the diagonal (i = j) terms, the cross term averages all m * n pairs."""
    m, n = x.shape[0], y.shape[0]
    k_xx = _polynomial_kernel(x, x)
    k_yy = _polynomial_kernel(y, y)
    k_xy = _polynomial_kernel(x, y)
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def kid(a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KidEstimate:
    """Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 5 and appendix).

    The unbiased MMD^2 estimator with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, computed on
    ``subsets`` random subsets of ``subset_size`` rows drawn without replacement from each set (capped at the
    smaller set's size), and averaged. Each subset estimate is unbiased, so their mean is too. The standard error
    is std(estimates, ddof=1) / sqrt(subsets) (0 for a single subset); it reflects the subset sampling only.
    """
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, got {subsets}.")
    if subset_size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}.")
    a, b = _feature_pair(a, b)
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        estimates[i] = _mmd2_unbiased(x, y)
    se = float(estimates.std(ddof=1) / np.sqrt(subsets)) if subsets > 1 else 0.0
    return KidEstimate(value=float(estimates.mean()), se=se, n_subsets=subsets, subset_size=m)


def fid_bootstrap(
    a: np.ndarray, b: np.ndarray, *, resamples: int = 200, seed: int = 0, alpha: float = 0.05
) -> FidEstimate:
    """FID of the full sets with a percentile bootstrap (Efron & Tibshirani 1993, "An Introduction to the
    Bootstrap", sec. 13.3) ``1 - alpha`` confidence interval.

    Each resample draws n_a rows of ``a`` and n_b rows of ``b`` with replacement, independently, and recomputes
    FID; the interval is the alpha/2 and 1 - alpha/2 quantiles of those values. FID is biased upward at finite n
    (Chong & Forsyth 2020), and resamples contain duplicates, so the interval can sit above the point value.
    Measured (benchmarks/evaluation.py): at 2,000 x 2,000 features of 512 dimensions the interval was [79, 82]
    around a point value of 42. So this interval describes the resampling spread, not where the true FID lies,
    whenever the dimension is not small against n; report KID with its SE and FID-infinity for those cases.
    """
    if resamples < 2:
        raise ValueError(f"resamples must be at least 2, got {resamples}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}.")
    a, b = _feature_pair(a, b)
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for i in range(resamples):
        x = a[rng.integers(0, a.shape[0], a.shape[0])]
        y = b[rng.integers(0, b.shape[0], b.shape[0])]
        values[i] = frechet_distance(*_mean_cov(x), *_mean_cov(y))
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return FidEstimate(
        value=fid_from_features(a, b), ci_low=float(low), ci_high=float(high), n_a=a.shape[0], n_b=b.shape[0]
    )


def default_fid_infinity_sizes(n: int, points: int = 15) -> tuple[int, ...]:
    """15 sample sizes, evenly spaced from min(5000, n // 5) up to n (Chong & Forsyth 2020 use 15 points from
    5,000 up to the full 50,000; for smaller sets the low end is a fifth of the set)."""
    low = max(2, min(5000, n // 5))
    return tuple(sorted({int(s) for s in np.linspace(low, n, points).round()}))


def extrapolate_fid_infinity(sizes: Sequence[int], fids: Sequence[float]) -> tuple[float, float]:
    """Least-squares line FID_N = intercept + slope / N; returns (intercept, slope). The intercept is FID_inf
    (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them", sec. 3, eq. 5:
    the bias of FID_N is linear in 1/N to first order)."""
    inv = 1.0 / np.asarray(sizes, dtype=np.float64)
    if inv.shape[0] < 2 or np.unique(inv).shape[0] < 2:
        raise ValueError("Need at least two different sample sizes to fit FID against 1/N.")
    slope, intercept = np.polyfit(inv, np.asarray(fids, dtype=np.float64), 1)
    return float(intercept), float(slope)


def fid_infinity(a: np.ndarray, b: np.ndarray, *, sizes: Sequence[int] | None = None, seed: int = 0) -> FidInfinity:
    """FID-infinity (Chong & Forsyth 2020, sec. 3): FID computed at several sample sizes N, on random subsets of
    N rows drawn without replacement from each set, then a line fitted to FID_N against 1/N and read at 1/N = 0.

    ``sizes`` defaults to ``default_fid_infinity_sizes(min(n_a, n_b))``; each must lie in [2, min(n_a, n_b)].
    """
    a, b = _feature_pair(a, b)
    n = min(a.shape[0], b.shape[0])
    chosen = default_fid_infinity_sizes(n) if sizes is None else tuple(int(s) for s in sizes)
    if any(s < 2 or s > n for s in chosen):
        raise ValueError(f"Sample sizes must lie between 2 and {n}, got {chosen}.")
    rng = np.random.default_rng(seed)
    fids = []
    for size in chosen:
        x = a[rng.choice(a.shape[0], size, replace=False)]
        y = b[rng.choice(b.shape[0], size, replace=False)]
        fids.append(frechet_distance(*_mean_cov(x), *_mean_cov(y)))
    value, slope = extrapolate_fid_infinity(chosen, fids)
    return FidInfinity(value=value, slope=slope, sizes=chosen, fids=tuple(fids))


def _pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances sqrt(|x|^2 + |y|^2 - 2 x.y), clipped at 0 (the expansion sklearn also uses)."""
    squared = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.clip(squared, 0.0, None))


def _knn_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row: the (k+1)-th smallest distance counting the row
    itself at distance 0, as ``prdc.compute_nearest_neighbour_distances`` does."""
    radii = np.empty(x.shape[0])
    for start in range(0, x.shape[0], chunk):
        block = _pairwise_distances(x[start : start + chunk], x)
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = 0.0
        radii[start : start + chunk] = np.partition(block, k, axis=1)[:, k]
    return radii


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 5, chunk_rows: int = DISTANCE_CHUNK_ROWS) -> PRDC:
    """Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
    Generative Models", eqs. 1-4; precision and recall after Kynkäänniemi et al. 2019), computed as the reference
    ``prdc`` package (github.com/clovaai/generative-evaluation-prdc) does.

    Each sample's radius is the Euclidean distance to its k-th nearest neighbour within its own set; "within" is
    strict (distance < radius). With N real and M fake samples:
    precision = share of fake inside at least one real ball; recall = share of real inside at least one fake ball;
    density = (1 / (k M)) * sum over fake of the number of real balls containing it; coverage = share of real
    whose nearest fake lies inside its own ball. Distances are computed ``chunk_rows`` rows at a time, so memory
    stays O(chunk_rows * max(N, M)).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}.")
    real, fake = _feature_pair(real, fake, min_rows=k + 1)
    real_radii = _knn_radii(real, k, chunk_rows)
    fake_radii = _knn_radii(fake, k, chunk_rows)

    balls_per_fake = np.zeros(fake.shape[0], dtype=np.int64)
    real_recalled = np.empty(real.shape[0], dtype=bool)
    real_covered = np.empty(real.shape[0], dtype=bool)
    for start in range(0, real.shape[0], chunk_rows):
        block = _pairwise_distances(real[start : start + chunk_rows], fake)
        radii = real_radii[start : start + chunk_rows]
        balls_per_fake += (block < radii[:, None]).sum(axis=0)
        real_recalled[start : start + chunk_rows] = (block < fake_radii[None, :]).any(axis=1)
        real_covered[start : start + chunk_rows] = block.min(axis=1) < radii

    return PRDC(
        precision=float((balls_per_fake > 0).mean()),
        recall=float(real_recalled.mean()),
        density=float(balls_per_fake.sum() / (k * fake.shape[0])),
        coverage=float(real_covered.mean()),
    )
