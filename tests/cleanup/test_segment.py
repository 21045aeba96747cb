"""Masks from boxes: dilation, glyph thresholding, and Segment Anything with a tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from cleanup.detect import TextBox
from cleanup.model_cache import cached_keys, clear_model_cache
from cleanup.rendered_text import render_boxed_label, render_circled_letter, render_text
from cleanup.segment import (
    SAM_ARCHITECTURES,
    GlyphSegmenter,
    SamSegmenter,
    dilate_mask,
    infer_sam_model_type,
    load_sam,
)


def _box(x: int, y: int, w: int, h: int, polarity: str | None = None) -> TextBox:
    return TextBox(x, y, w, h, source="test", score=1.0, polarity=polarity)


def test_dilation_with_the_reference_settings_grows_a_pixel_to_a_9x9_square():
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = dilate_mask(mask, kernel=5, iterations=2)  # two 5x5 passes reach 4 px each way
    assert grown.sum() == 81 and grown[6:15, 6:15].all()
    assert dilate_mask(mask, kernel=5, iterations=0).sum() == 1
    with pytest.raises(ValueError, match="kernel >= 1"):
        dilate_mask(mask, kernel=0)


def test_glyph_mask_covers_the_letters_and_not_the_background_around_them(clean_phantom):
    pixels, truth = render_text(clean_phantom, "LIEGEND", x=100, y=100, height=20)
    change = np.abs(pixels - clean_phantom)
    mask = GlyphSegmenter().segment(pixels, [_box(*truth, polarity="bright")])
    assert mask[change > 0.5].mean() >= 0.98
    # The pipeline's dilation (5x5, twice) then takes in every anti-aliased edge pixel as well.
    assert dilate_mask(mask)[change > 0.02].all()
    x, y, w, h = truth
    assert not mask[:y, :].any() and not mask[y + h :, :].any()
    # Inside the box, the counters of the letters and the gaps between them stay untouched.
    assert mask[y : y + h, x : x + w].mean() < 0.6


def test_dark_text_is_segmented_in_its_own_polarity(clean_phantom):
    pixels, truth = render_text(clean_phantom, "AP", x=300, y=420, height=24, polarity="dark")
    change = np.abs(pixels - clean_phantom)
    mask = GlyphSegmenter().segment(pixels, [_box(*truth)])  # polarity left for the segmenter to find
    assert mask[change > 0.5].mean() >= 0.98 and dilate_mask(mask)[change > 0.02].all()


@pytest.mark.parametrize(
    "draw",
    [
        lambda p: render_boxed_label(p, "R", x=60, y=60, height=20),
        lambda p: render_circled_letter(p, "L", x=300, y=60, diameter=36),
    ],
    ids=["boxed label", "circled letter"],
)
def test_a_label_on_a_flat_frame_is_masked_whole(clean_phantom, draw):
    pixels, box = draw(clean_phantom)
    change = np.abs(pixels - clean_phantom)
    mask = GlyphSegmenter().segment(pixels, [_box(*box)])
    # The frame or disc is masked with its letter, and the pipeline's dilation adds the anti-aliased rim.
    assert mask[change > 0.2].mean() >= 0.98 and dilate_mask(mask)[change > 0.02].all()


def test_tiny_checkpoint_loads_through_the_same_path_as_a_released_one(tiny_sam_checkpoint):
    import torch

    state = torch.load(tiny_sam_checkpoint, weights_only=True)
    assert infer_sam_model_type(state) == "tiny"
    sam = load_sam(tiny_sam_checkpoint)  # "auto" architecture
    assert sam.image_encoder.img_size == SAM_ARCHITECTURES["tiny"].image_size
    with pytest.raises(ValueError, match="does not fit the vit_b architecture"):
        load_sam(tiny_sam_checkpoint, "vit_b")
    with pytest.raises(FileNotFoundError, match="SAM checkpoint not found"):
        load_sam(tiny_sam_checkpoint.with_name("missing.pth"))


def test_sam_masks_stay_near_their_boxes_and_the_model_is_loaded_once(tiny_sam_checkpoint, labelled_scene):
    pixels, truth = labelled_scene
    segmenter = SamSegmenter(checkpoint=str(tiny_sam_checkpoint), device="cpu")
    boxes = [_box(*truth["bright_text"]), _box(*truth["lead_marker"])]
    mask = segmenter.segment(pixels, boxes)
    assert mask.shape == pixels.shape and mask.any()
    allowed = np.zeros_like(mask)
    for box in boxes:  # masks are clipped to each box grown by a quarter of its size
        gx, gy = int(np.ceil(0.25 * box.w)), int(np.ceil(0.25 * box.h))
        allowed[max(0, box.y - gy) : box.y + box.h + gy, max(0, box.x - gx) : box.x + box.w + gx] = True
    assert not mask[~allowed].any()
    predictor = segmenter.predictor()
    assert segmenter.predictor() is predictor and sum(k[0] == "sam" for k in cached_keys()) == 1
    clear_model_cache()
    assert not any(k[0] == "sam" for k in cached_keys())


def test_sam_segmenter_needs_a_checkpoint():
    with pytest.raises(ValueError, match="needs a checkpoint"):
        SamSegmenter()
