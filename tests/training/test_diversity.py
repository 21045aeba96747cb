"""Tests for training.diversity: SSIM / MS-SSIM against hand-derived values and scikit-image, and the pairwise
diversity summary of generations of one prompt."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from training.diversity import MS_SSIM_WEIGHTS, Diversity, diversity, diversity_by_prompt, ms_ssim, ssim

SIZE = 176  # > 160, the smallest side MS-SSIM at 5 scales allows


def texture(seed: int, shape: tuple[int, int] = (SIZE, SIZE), sigma: float = 3.0) -> np.ndarray:
    """Smooth random texture in about [0, 1]: Gaussian-filtered white noise, rescaled."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return 0.5 + 0.2 * field / field.std()


def test_identical_images_score_one() -> None:
    a = texture(1)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert ms_ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-9)


def test_symmetric() -> None:
    a, b = texture(1), texture(2)
    b = 0.7 * a + 0.3 * b
    assert ms_ssim(a, b) == pytest.approx(ms_ssim(b, a), abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)


def test_close_to_one_and_monotone_in_noise() -> None:
    a = texture(3)
    noise = np.random.default_rng(4).standard_normal(a.shape)
    levels = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    scores = [ms_ssim(a, a + s * noise) for s in levels]
    assert scores[0] > 0.99
    assert all(x > y for x, y in itertools.pairwise(scores)), scores
    assert scores[-1] < scores[0]


def test_unrelated_textures_score_low() -> None:
    a, b = texture(5), texture(6)
    assert ms_ssim(a, b) < 0.3
    rng = np.random.default_rng(7)
    assert ms_ssim(rng.random((SIZE, SIZE)), rng.random((SIZE, SIZE))) < 0.3


def test_anticorrelated_images_clip_to_zero() -> None:
    # Mean cs at the finest scale is negative, clipped to 0 before the power: the product is exactly 0, not NaN.
    a = texture(8)
    assert ms_ssim(a, 1.0 - a) == 0.0


def test_constant_images_match_hand_derived_value() -> None:
    # Two constant images c1 = 0.2, c2 = 0.6, data_range L = 1, so C1 = (0.01 L)^2 = 1e-4.
    # Every window has mu_a = 0.2, mu_b = 0.6 and sigma_a^2 = sigma_b^2 = sigma_ab = 0, so
    #   cs = (2 * 0 + C2) / (0 + 0 + C2) = 1,
    #   l  = (2 * 0.2 * 0.6 + C1) / (0.2^2 + 0.6^2 + C1) = (0.24 + 1e-4) / (0.40 + 1e-4) = 0.2401 / 0.4001,
    # and SSIM = l * cs = 0.2401 / 0.4001 ≈ 0.600100. Average pooling keeps the images constant, so at every
    # scale cs = 1 and at the coarsest SSIM = l: MS-SSIM = 1^(w1+...+w4) * l^w5 = (0.2401 / 0.4001)^0.1333.
    a = np.full((SIZE, SIZE), 0.2)
    b = np.full((SIZE, SIZE), 0.6)
    expected = 0.2401 / 0.4001
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert ms_ssim(a, b) == pytest.approx(expected ** MS_SSIM_WEIGHTS[-1], abs=1e-12)


def test_data_range_scaling() -> None:
    a, b = texture(9), texture(10)
    b = 0.5 * a + 0.5 * b
    assert ssim(255 * a, 255 * b, data_range=255) == pytest.approx(ssim(a, b), abs=1e-10)
    assert ms_ssim(255 * a, 255 * b, data_range=255) == pytest.approx(ms_ssim(a, b), abs=1e-10)


@pytest.mark.parametrize("shape", [(64, 48), (37, 91), (11, 11)])
def test_ssim_matches_scikit_image(shape: tuple[int, int]) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape)
    b = np.clip(a + 0.2 * rng.standard_normal(shape), 0, 1)
    for x, y in [(a, b), (a, rng.random(shape))]:
        expected = metrics.structural_similarity(
            x, y, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ssim(x, y) == pytest.approx(expected, abs=1e-6)


def test_odd_sizes_at_the_minimum_work() -> None:
    a = texture(11, shape=(161, 203))
    b = texture(12, shape=(161, 203))
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert 0.0 <= ms_ssim(a, b) < 1.0


def test_diversity_of_identical_and_independent_images() -> None:
    a = texture(13)
    same = diversity([a, a.copy(), a.copy(), a.copy()])
    assert same == Diversity(
        mean_ms_ssim=pytest.approx(1.0, abs=1e-9), std=pytest.approx(0.0, abs=1e-9), pairs=6, n_images=4
    )
    rng = np.random.default_rng(14)
    noise = diversity([rng.random((SIZE, SIZE)) for _ in range(4)])
    assert noise.pairs == 6 and noise.n_images == 4
    assert noise.mean_ms_ssim < 0.3
    assert noise.std >= 0.0


def test_diversity_sampled_pairs_are_seeded() -> None:
    imgs = [texture(20 + i) for i in range(5)]  # 10 pairs
    d1 = diversity(imgs, max_pairs=4, seed=3)
    d2 = diversity(imgs, max_pairs=4, seed=3)
    assert d1 == d2 and d1.pairs == 4 and d1.n_images == 5
    assert diversity(imgs, max_pairs=100).pairs == 10
    full = diversity(imgs)
    assert full.pairs == 10
    pairwise = [ms_ssim(imgs[i], imgs[j]) for i in range(5) for j in range(i + 1, 5)]
    assert full.mean_ms_ssim == pytest.approx(np.mean(pairwise), abs=1e-12)
    assert full.std == pytest.approx(np.std(pairwise), abs=1e-12)


def test_diversity_by_prompt() -> None:
    a = texture(30)
    rng = np.random.default_rng(31)
    out = diversity_by_prompt({"collapsed": [a, a, a], "diverse": [rng.random((SIZE, SIZE)) for _ in range(3)]})
    assert list(out) == ["collapsed", "diverse"]
    assert out["collapsed"].mean_ms_ssim == pytest.approx(1.0, abs=1e-9)
    assert out["diverse"].mean_ms_ssim < out["collapsed"].mean_ms_ssim
    assert diversity_by_prompt({}) == {}


def test_refuses_bad_inputs() -> None:
    a = texture(40)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(np.zeros((160, 200)), np.zeros((160, 200)))
    with pytest.raises(ValueError, match="too small"):
        ssim(np.zeros((10, 20)), np.zeros((10, 20)))
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(a, a[:-1])
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, a.T[:, :-2])
    bad = a.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ms_ssim(a, bad)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        ssim(bad, a)
    with pytest.raises(ValueError, match="2-D"):
        ms_ssim(np.stack([a, a], axis=-1), np.stack([a, a], axis=-1))
    with pytest.raises(TypeError, match="complex"):
        ssim(a.astype(complex), a)
    with pytest.raises(ValueError, match="data_range"):
        ssim(a, a, data_range=0)
    with pytest.raises(ValueError, match="weights"):
        ms_ssim(a, a, weights=())


def test_diversity_refuses_bad_inputs() -> None:
    a = texture(41)
    with pytest.raises(ValueError, match="at least 2"):
        diversity([a])
    with pytest.raises(TypeError, match="single image"):
        diversity(a)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        diversity([a, a[:, :-1]])
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"images\[2\].*non-finite"):
        diversity([a, a, bad])
    with pytest.raises(ValueError, match="too small"):
        diversity([np.zeros((100, 300))] * 2)
    with pytest.raises(ValueError, match="max_pairs"):
        diversity([a, a], max_pairs=0)
