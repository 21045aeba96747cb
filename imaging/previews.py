"""Pixel code for review previews and stored intermediate images: a 16-bit PNG of cleaned pixels, previews at
a bounded size with the serving filter, and a translucent mask overlay. No Django.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from imaging.normalise import RESAMPLING_FILTER, fitted_size
from imaging.png import encode_png_gray8, to_uint8

# Longest side of the before/after/mask previews on the review page: enough to read a label, small to load.
PREVIEW_SIZE = 1024
# The mask overlay on the review page: a translucent red that stays visible on both black and white anatomy.
OVERLAY_RGBA = (255, 45, 85, 140)


# --- image files --------------------------------------------------------------------------------------------------


def encode_png_gray16(pixels: np.ndarray) -> bytes:
    """2-D float pixels in [0, 1] -> 16-bit grayscale PNG: the cleaned image keeps the precision of 16-bit sources."""
    values = np.rint(np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_size(width: int, height: int) -> tuple[int, int]:
    """Preview dimensions: the longest side reduced to PREVIEW_SIZE, never enlarged."""
    if max(width, height) <= PREVIEW_SIZE:
        return width, height
    return fitted_size(width, height, PREVIEW_SIZE)


def preview_png(pixels: np.ndarray) -> bytes:
    """An 8-bit preview for the review page (same filter as the served images), aspect ratio kept, no padding."""
    height, width = pixels.shape
    target = preview_size(width, height)
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    if target != (width, height):
        image = image.resize(target, resample=RESAMPLING_FILTER)
    return encode_png_gray8(to_uint8(np.asarray(image, dtype=np.float32)))


def overlay_png(mask: np.ndarray) -> bytes:
    """The removal mask as a translucent colour overlay at preview size (transparent where nothing was removed).

    Reduced with a box filter and then thresholded, so a thin stroke of the mask never disappears from the preview.
    """
    height, width = mask.shape
    target = preview_size(width, height)
    reduced = Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8))
    if target != (width, height):
        reduced = reduced.resize(target, resample=Image.Resampling.BOX)
    covered = np.asarray(reduced) > 0
    rgba = np.zeros((*covered.shape, 4), np.uint8)
    rgba[covered] = OVERLAY_RGBA
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
