"""Draw burned-in text and markers of known position onto X-ray pixels, for tests and the benchmark.

Every function takes a 2-D float image in [0, 1], returns a new image with one artifact drawn on it and the
artifact's box ``(x, y, w, h)`` (the tight box of the changed pixels). Text uses the DejaVu fonts Debian
installs. The kinds follow what real chest X-rays carry: digital labels in either polarity, lead letters
(bright, slightly blurred, as radiographed metal is), circled letters (white ring and letter on a black disc),
labels on a flat grey box, and black anonymisation bars along an edge.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

Box = tuple[int, int, int, int]
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {"sans": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}


@lru_cache(maxsize=64)
def _font(name: str, size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    path = FONT_DIR / FONTS[name]
    if not path.is_file():
        raise FileNotFoundError(f"Font {path} is missing; install Debian's fonts-dejavu-core.")
    return ImageFont.truetype(str(path), size)


def _ink(text: str, height: int, font: str) -> np.ndarray:
    """Anti-aliased coverage (0..1) of ``text`` whose capital letters are about ``height`` px tall."""
    from PIL import Image, ImageDraw

    face = _font(font, max(4, round(height / 0.73)))  # DejaVu capitals are ~73% of the em size
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=face)
    coverage = np.asarray(canvas, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(coverage > 0)
    return coverage[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _place(pixels: np.ndarray, ink: np.ndarray, x: int, y: int, level: float) -> tuple[np.ndarray, Box]:
    """Blend ``ink`` (coverage) into a copy of ``pixels`` at (x, y) towards ``level``."""
    height, width = pixels.shape
    ink_h, ink_w = ink.shape
    if x < 0 or y < 0 or x + ink_w > width or y + ink_h > height:
        raise ValueError(f"An artifact of {ink_w}x{ink_h} px at ({x}, {y}) does not fit a {width}x{height} image.")
    out = pixels.astype(np.float32, copy=True)
    window = out[y : y + ink_h, x : x + ink_w]
    window[:] = window * (1.0 - ink) + np.float32(level) * ink
    rows, cols = np.nonzero(ink > 0.05)
    return out, (
        x + int(cols.min()),
        y + int(rows.min()),
        int(cols.max() - cols.min() + 1),
        int(rows.max() - rows.min() + 1),
    )


def render_text(
    pixels: np.ndarray,
    text: str,
    *,
    x: int,
    y: int,
    height: int,
    polarity: Literal["bright", "dark"] = "bright",
    level: float | None = None,
    font: str = "sans",
) -> tuple[np.ndarray, Box]:
    """A digital label: ``text`` with capitals ``height`` px tall, white (or black for ``"dark"``) by default."""
    if level is None:
        level = 1.0 if polarity == "bright" else 0.0
    return _place(pixels, _ink(text, height, font), x, y, level)


def render_lead_marker(
    pixels: np.ndarray, letter: str = "L", *, x: int, y: int, height: int, blur: float = 1.0, level: float = 0.97
) -> tuple[np.ndarray, Box]:
    """A radiographed lead letter: bold, bright, its edges softened by ``blur`` px (Gaussian sigma)."""
    from scipy.ndimage import gaussian_filter

    ink = np.pad(_ink(letter, height, "bold"), 3)
    if blur > 0:
        ink = np.clip(gaussian_filter(ink, blur), 0.0, 1.0)
    return _place(pixels, ink, x - 3, y - 3, level)


def render_circled_letter(
    pixels: np.ndarray, letter: str = "L", *, x: int, y: int, diameter: int
) -> tuple[np.ndarray, Box]:
    """A digital circled letter: black disc, white ring about 7% of the diameter wide, white letter."""
    size = diameter
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    radius = np.hypot(xx - size / 2, yy - size / 2)
    ring_width = max(1.5, 0.07 * size)
    disc = np.clip(size / 2 - radius + 0.5, 0, 1)
    ring = np.clip(ring_width / 2 + 0.5 - np.abs(radius - (size / 2 - ring_width / 2)), 0, 1)
    height, width = pixels.shape
    if x < 0 or y < 0 or x + size > width or y + size > height:
        raise ValueError(f"A circle of {size} px at ({x}, {y}) does not fit a {width}x{height} image.")
    out = pixels.astype(np.float32, copy=True)
    window = out[y : y + size, x : x + size]
    window[:] = window * (1 - disc) + 0.01 * disc
    window[:] = window * (1 - ring) + 1.0 * ring
    letter_ink = _ink(letter, max(4, int(0.45 * size)), "sans")
    ly, lx = y + (size - letter_ink.shape[0]) // 2, x + (size - letter_ink.shape[1]) // 2
    out, _ = _place(out, letter_ink, lx, ly, 1.0)
    return out, (x, y, size, size)


def render_boxed_label(
    pixels: np.ndarray,
    text: str,
    *,
    x: int,
    y: int,
    height: int,
    box_level: float = 0.35,
    text_level: float = 0.75,
    padding: float = 0.4,
) -> tuple[np.ndarray, Box]:
    """A label on a flat grey box (as MHH's "Bettaufnahme" and boxed "L"): the box is part of the artifact."""
    ink = _ink(text, height, "sans")
    pad = max(2, round(padding * height))
    box_h, box_w = ink.shape[0] + 2 * pad, ink.shape[1] + 2 * pad
    image_h, image_w = pixels.shape
    if x < 0 or y < 0 or x + box_w > image_w or y + box_h > image_h:
        raise ValueError(f"A {box_w}x{box_h} px box at ({x}, {y}) does not fit a {image_w}x{image_h} image.")
    out = pixels.astype(np.float32, copy=True)
    out[y : y + box_h, x : x + box_w] = box_level
    out, _ = _place(out, ink, x + pad, y + pad, text_level)
    return out, (x, y, box_w, box_h)


def render_bar(
    pixels: np.ndarray,
    *,
    edge: Literal["top", "bottom", "left", "right"] = "top",
    start: int,
    length: int,
    thickness: int,
    level: float = 0.0,
) -> tuple[np.ndarray, Box]:
    """A constant-level bar lying along ``edge``, from ``start`` for ``length`` px, ``thickness`` px deep."""
    height, width = pixels.shape
    out = pixels.astype(np.float32, copy=True)
    if edge in ("top", "bottom"):
        y0 = 0 if edge == "top" else height - thickness
        box = (start, y0, length, thickness)
    else:
        x0 = 0 if edge == "left" else width - thickness
        box = (x0, start, thickness, length)
    bx, by, bw, bh = box
    if bx < 0 or by < 0 or bx + bw > width or by + bh > height:
        raise ValueError(f"A bar {box} does not fit a {width}x{height} image.")
    out[by : by + bh, bx : bx + bw] = level
    return out, box
