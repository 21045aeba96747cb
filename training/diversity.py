"""Diversity of generations of one prompt: mean pairwise multi-scale SSIM (MS-SSIM).

A generator that has collapsed onto one image per prompt produces near-identical samples; the mean MS-SSIM over
pairs of generations of the same prompt measures that. Values lie in [0, 1]; **lower mean MS-SSIM = more
diverse** (1.0 = every generation identical). The measure is that of Odena et al. ("Conditional Image Synthesis
with Auxiliary Classifier GANs", ICML 2017), applied per prompt.

Plain numpy/scipy, no Django, no torch.

SSIM follows Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004: an 11 x 11 Gaussian window with sigma 1.5 (normalised to sum 1, applied separably),
'valid' filtering (only windows wholly inside the image; no padding), K1 = 0.01, K2 = 0.03,
C1 = (K1 L)^2, C2 = (K2 L)^2 for data range L, population (1/N-weighted) local variances, and the mean of the
SSIM map. With these settings ``ssim`` equals ``skimage.metrics.structural_similarity(a, b, data_range=L,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``, whose cropped map is the same 'valid' region.

MS-SSIM follows Wang, Simoncelli & Bovik, "Multiscale structural similarity for image quality assessment",
Asilomar 2003: the contrast-structure term cs_j (mean of (2 sigma_ab + C2) / (sigma_a^2 + sigma_b^2 + C2)) at
each of M = 5 scales, with 2 x 2 average pooling between scales, and the luminance term only at the coarsest
scale, where, as in common implementations (e.g. pytorch-msssim, TensorFlow's ``tf.image.ssim_multiscale``),
the mean of the full SSIM map l * cs is used:

    MS-SSIM = prod_{j < M} max(cs_j, 0)^w_j  *  max(SSIM_M, 0)^w_M

Two implementation choices, stated because they change values:

* Negative cs_j (and a negative coarsest SSIM) are clipped at 0 before the power, as common implementations do
  (pytorch-msssim applies ReLU); a fractional power of a negative number is otherwise undefined. Anti-correlated
  images therefore score exactly 0.
* An odd side is padded by repeating its last row/column before 2 x 2 pooling (i.e. ceil(n / 2) output), so that
  any image whose smaller side exceeds (11 - 1) * 2^(M - 1) = 160 px still has a full 11 x 11 window at the
  coarsest scale. Images that small or smaller are refused.

The default weights are the published ones (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); they are used as given,
not renormalised.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window() -> np.ndarray:
    x = np.arange(WINDOW_SIZE, dtype=np.float64) - (WINDOW_SIZE - 1) / 2
    g = np.exp(-0.5 * (x / WINDOW_SIGMA) ** 2)
    return g / g.sum()


_WINDOW = _gaussian_window()


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering, 'valid' region only: output shape (H - 10, W - 10)."""
    x = sliding_window_view(x, WINDOW_SIZE, axis=0) @ _WINDOW
    return sliding_window_view(x, WINDOW_SIZE, axis=1) @ _WINDOW


def _ssim_and_cs(a: np.ndarray, b: np.ndarray, c1: float, c2: float) -> tuple[float, float]:
    """Mean SSIM map and mean contrast-structure map of two validated float64 images."""
    mu_a = _filter_valid(a)
    mu_b = _filter_valid(b)
    mu_aa = mu_a * mu_a
    mu_bb = mu_b * mu_b
    mu_ab = mu_a * mu_b
    var_a = _filter_valid(a * a) - mu_aa
    var_b = _filter_valid(b * b) - mu_bb
    cov = _filter_valid(a * b) - mu_ab
    cs_map = (2.0 * cov + c2) / (var_a + var_b + c2)
    luminance = (2.0 * mu_ab + c1) / (mu_aa + mu_bb + c1)
    return float(np.mean(luminance * cs_map)), float(np.mean(cs_map))


def _downsample(x: np.ndarray) -> np.ndarray:
    """2 x 2 average pooling; an odd side is first extended by repeating its last row/column."""
    h, w = x.shape
    if h % 2 or w % 2:
        x = np.pad(x, ((0, h % 2), (0, w % 2)), mode="edge")
    h, w = x.shape
    return x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _as_image(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (grey-scale) image, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _check_data_range(data_range: float) -> float:
    if isinstance(data_range, bool) or not isinstance(data_range, int | float | np.floating | np.integer):
        raise TypeError(f"data_range must be a number, got {type(data_range).__name__}")
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a finite positive number, got {data_range!r}")
    return value


def _check_weights(weights: Sequence[float]) -> tuple[float, ...]:
    w = tuple(float(v) for v in weights)
    if not w:
        raise ValueError("weights must name at least one scale")
    if not all(math.isfinite(v) and v >= 0 for v in w):
        raise ValueError(f"weights must be finite and non-negative, got {weights!r}")
    return w


def _min_side_for(n_scales: int) -> int:
    """Smallest allowed min(H, W): strictly more than (11 - 1) * 2^(n_scales - 1)."""
    return (WINDOW_SIZE - 1) * 2 ** (n_scales - 1) + 1


def _check_pair(a: object, b: object, min_side: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    a_arr = _as_image(a, "a")
    b_arr = _as_image(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"images must have the same shape, got {a_arr.shape} and {b_arr.shape}")
    if min(a_arr.shape) < min_side:
        raise ValueError(
            f"image of shape {a_arr.shape} is too small for {what}: its smaller side must be >= {min_side}"
        )
    return a_arr, b_arr


def _constants(data_range: float) -> tuple[float, float]:
    return (K1 * data_range) ** 2, (K2 * data_range) ** 2


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> float:
    """Single-scale SSIM (Wang et al. 2004) of two 2-D images of the same shape; mean of the 'valid' SSIM map."""
    dr = _check_data_range(data_range)
    a_arr, b_arr = _check_pair(a, b, WINDOW_SIZE, f"SSIM with an {WINDOW_SIZE} x {WINDOW_SIZE} window")
    c1, c2 = _constants(dr)
    return _ssim_and_cs(a_arr, b_arr, c1, c2)[0]


def _ms_ssim_unchecked(a: np.ndarray, b: np.ndarray, c1: float, c2: float, weights: tuple[float, ...]) -> float:
    value = 1.0
    last = len(weights) - 1
    for j, w in enumerate(weights):
        s, cs = _ssim_and_cs(a, b, c1, c2)
        if j == last:
            value *= max(s, 0.0) ** w
        else:
            value *= max(cs, 0.0) ** w
            a = _downsample(a)
            b = _downsample(b)
    return float(value)


def ms_ssim(
    a: np.ndarray,
    b: np.ndarray,
    *,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) of two 2-D images of the same shape, in [0, 1].

    One scale per weight (5 by default); the smaller side must exceed (11 - 1) * 2^(scales - 1) (160 px for 5).
    Negative contrast-structure values are clipped at 0 before the power.
    """
    dr = _check_data_range(data_range)
    w = _check_weights(weights)
    a_arr, b_arr = _check_pair(a, b, _min_side_for(len(w)), f"MS-SSIM at {len(w)} scales")
    c1, c2 = _constants(dr)
    return _ms_ssim_unchecked(a_arr, b_arr, c1, c2, w)


@dataclass(frozen=True)
class Diversity:
    """Pairwise MS-SSIM of generations of one prompt. Lower ``mean_ms_ssim`` = more diverse.

    ``std`` is the population standard deviation (ddof = 0) of the pairwise values, a description of their
    spread, not a standard error (pairs sharing an image are not independent). ``pairs`` is the number of
    pairs evaluated, ``n_images`` the number of generations.
    """

    mean_ms_ssim: float
    std: float
    pairs: int
    n_images: int


def diversity(
    images: Sequence[np.ndarray],
    *,
    max_pairs: int | None = None,
    seed: int = 0,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> Diversity:
    """Mean pairwise MS-SSIM over all unordered pairs of ``images`` (generations of one prompt).

    With ``max_pairs`` smaller than the number of pairs, a uniformly random subset of that many distinct pairs
    is drawn (without replacement) with ``numpy.random.default_rng(seed)``, so the result is reproducible.
    Lower = more diverse.
    """
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise TypeError("images must be a sequence of 2-D images, not a single image")
    imgs = list(images)
    n = len(imgs)
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    if max_pairs is not None and (
        isinstance(max_pairs, bool) or not isinstance(max_pairs, int | np.integer) or max_pairs < 1
    ):
        raise ValueError(f"max_pairs must be a positive integer or None, got {max_pairs!r}")
    dr = _check_data_range(data_range)
    w = _check_weights(weights)
    min_side = _min_side_for(len(w))

    arrays = [_as_image(img, f"images[{i}]") for i, img in enumerate(imgs)]
    shape = arrays[0].shape
    for i, arr in enumerate(arrays):
        if arr.shape != shape:
            raise ValueError(f"all images must have the same shape: images[0] is {shape}, images[{i}] is {arr.shape}")
    if min(shape) < min_side:
        raise ValueError(
            f"images of shape {shape} are too small for MS-SSIM at {len(w)} scales: "
            f"the smaller side must be >= {min_side}"
        )

    all_pairs = list(itertools.combinations(range(n), 2))
    if max_pairs is not None and max_pairs < len(all_pairs):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(all_pairs), size=int(max_pairs), replace=False))
        pairs = [all_pairs[k] for k in chosen]
    else:
        pairs = all_pairs

    c1, c2 = _constants(dr)
    values = np.array([_ms_ssim_unchecked(arrays[i], arrays[j], c1, c2, w) for i, j in pairs])
    return Diversity(
        mean_ms_ssim=float(values.mean()),
        std=float(values.std()),
        pairs=len(pairs),
        n_images=n,
    )


def diversity_by_prompt(
    groups: Mapping[str, Sequence[np.ndarray]],
    *,
    max_pairs: int | None = None,
    seed: int = 0,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> dict[str, Diversity]:
    """``diversity`` of each prompt's generations, keyed by prompt (same order as ``groups``)."""
    return {
        prompt: diversity(images, max_pairs=max_pairs, seed=seed, data_range=data_range, weights=weights)
        for prompt, images in groups.items()
    }
