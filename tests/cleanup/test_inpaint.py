"""Inpainting: pixels outside the mask never change; classical fills are smooth; SD runs offline and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from cleanup.inpaint import (
    ClassicalInpainter,
    StableDiffusionInpainter,
    Window,
    check_mask,
    mask_windows,
)


@pytest.fixture(scope="module")
def noisy_image_and_mask(clean_phantom):
    rng = np.random.default_rng(5)
    pixels = np.clip(clean_phantom + rng.normal(0, 0.01, clean_phantom.shape), 0, 1).astype(np.float32)
    mask = np.zeros(pixels.shape, bool)
    mask[40:70, 400:480] = True  # a label-sized rectangle
    mask[300:306, 20:90] = True  # a thin line of text
    mask[200, 200] = True  # a single pixel
    return pixels, mask


@pytest.mark.parametrize("method", ["telea", "ns", "biharmonic"])
def test_classical_inpainting_changes_only_masked_pixels(noisy_image_and_mask, method):
    pixels, mask = noisy_image_and_mask
    filled = ClassicalInpainter(method=method).inpaint(pixels, mask)
    assert filled.dtype == np.float32 and filled.shape == pixels.shape
    assert np.array_equal(filled[~mask], pixels[~mask])
    assert not np.array_equal(filled[mask], pixels[mask])
    assert filled.min() >= 0.0 and filled.max() <= 1.0


@pytest.mark.parametrize("method", ["telea", "ns", "biharmonic"])
def test_classical_inpainting_continues_a_smooth_gradient(method):
    # A plane is what any sensible fill reproduces; OpenCV's Telea on raw [0, 1] floats did not (it overflowed).
    y, x = np.mgrid[0:120, 0:160]
    plane = (0.2 + 0.5 * x / 160 + 0.2 * y / 120).astype(np.float32)
    mask = np.zeros(plane.shape, bool)
    mask[50:70, 40:110] = True
    filled = ClassicalInpainter(method=method).inpaint(plane, mask)
    assert np.abs(filled - plane)[mask].max() < 0.04


def test_mask_windows_add_context_merge_neighbours_and_can_be_square():
    mask = np.zeros((100, 200), bool)
    mask[10:20, 10:20] = True
    mask[10:20, 30:40] = True  # 10 px away: merged once each has 8 px of context
    mask[80:90, 180:190] = True
    assert mask_windows(mask, 8) == [Window(2, 28, 2, 48), Window(72, 98, 172, 198)]
    for window in mask_windows(mask, 8, square=True):
        assert window.height == window.width
        assert window.y0 >= 0 and window.y1 <= 100 and window.x0 >= 0 and window.x1 <= 200


def test_masks_must_match_the_image():
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\) but the image has shape \(4, 4\)"):
        check_mask(np.zeros((3, 3)), (4, 4))
    assert check_mask(np.array([[0, 255]], np.uint8), (1, 2)).tolist() == [[False, True]]
    with pytest.raises(ValueError, match="Unknown classical inpainting method"):
        ClassicalInpainter(method="smear")


def test_stable_diffusion_inpainting_is_offline_seeded_and_exact_outside_the_mask(
    tiny_sd_inpainting, noisy_image_and_mask
):
    pixels, mask = noisy_image_and_mask
    inpainter = StableDiffusionInpainter(model_path=str(tiny_sd_inpainting), steps=2, size=64, seed=7, device="cpu")
    first = inpainter.inpaint(pixels, mask)
    assert np.array_equal(first[~mask], pixels[~mask])
    assert not np.allclose(first[mask], pixels[mask])
    # Same seed, same pixels: the cached pipeline gives the same image again.
    assert np.array_equal(inpainter.inpaint(pixels, mask), first)
    assert inpainter.pipeline() is inpainter.pipeline()


def test_stable_diffusion_inpainter_refuses_a_folder_that_is_not_a_model(tmp_path):
    inpainter = StableDiffusionInpainter(model_path=str(tmp_path), device="cpu")
    mask = np.zeros((32, 32), bool)
    mask[5:10, 5:10] = True
    with pytest.raises(FileNotFoundError, match=r"model_index\.json"):
        inpainter.inpaint(np.zeros((32, 32), np.float32), mask)
