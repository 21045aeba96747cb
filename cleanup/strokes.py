"""Find stroke-like bright or dark marks in an X-ray: the raw material for text and marker detection.

Burned-in labels, digital annotations and lead markers differ from anatomy in the same few ways: they are
small, they stand well above (or below) their local background, their edges are steps rather than ramps, and
digital overlays are drawn in one flat grey level. This module measures exactly that for every connected mark
of a morphological top-hat (bright marks) or black-hat (dark marks) at two structuring-element sizes, one for
letter strokes and one for whole markers, and groups nearby marks into candidate regions. It decides nothing:
the detectors in :mod:`cleanup.detect` turn regions into boxes.

Everything runs on a *working image*: the input scaled so its long side is at most ``max_side`` pixels
(shrinking only), as 8-bit grey levels. Coordinates are working-image pixels unless a function says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Polarity = Literal["bright", "dark"]
POLARITIES: tuple[Polarity, Polarity] = ("bright", "dark")


@dataclass(frozen=True)
class WorkingImage:
    """The image the detectors look at: 8-bit, long side at most ``max_side``, plus how to map back.

    ``scale`` is working pixels per original pixel (at most 1).
    """

    pixels: np.ndarray
    scale: float
    original_shape: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]

    def box_to_original(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        """Map a working-image box to the smallest original-image box that contains it, clipped to the image."""
        if self.scale == 1.0:
            return x, y, w, h
        height, width = self.original_shape
        x0 = max(0, int(np.floor(x / self.scale)))
        y0 = max(0, int(np.floor(y / self.scale)))
        x1 = min(width, int(np.ceil((x + w) / self.scale)))
        y1 = min(height, int(np.ceil((y + h) / self.scale)))
        return x0, y0, x1 - x0, y1 - y0


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """Validate a 2-D grayscale image with values in [0, 1] and return it as float32 (no copy if it is already).

    Raises ``ValueError`` naming the problem: wrong dimensionality, an empty image, non-finite values or values
    outside [0, 1] (beyond rounding).
    """
    array = np.asarray(pixels)
    if array.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got an array of shape {array.shape}.")
    if array.shape[0] < 8 or array.shape[1] < 8:
        raise ValueError(f"The image is too small to clean ({array.shape[1]}x{array.shape[0]} pixels).")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"Expected float pixels in [0, 1], got dtype {array.dtype}.")
    if not np.isfinite(array).all():
        raise ValueError("The image contains NaN or infinite values.")
    low, high = float(array.min()), float(array.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"Pixel values must lie in [0, 1]; found [{low:.4g}, {high:.4g}].")
    return array.astype(np.float32, copy=False)


def working_image(pixels: np.ndarray, max_side: int = 1024) -> WorkingImage:
    """Scale ``pixels`` (2-D float in [0, 1]) down so the long side is at most ``max_side`` and quantise to 8 bits.

    Area averaging is used when shrinking so that thin strokes fade rather than alias away.
    """
    import cv2

    if max_side < 64:
        raise ValueError(f"max_side must be at least 64 pixels, got {max_side}.")
    pixels = check_pixels(pixels)
    height, width = pixels.shape
    scale = min(1.0, max_side / max(height, width))
    image = pixels
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return WorkingImage(pixels=u8, scale=scale, original_shape=(height, width))


@dataclass(frozen=True)
class StrokeComponent:
    """One connected bright or dark mark, with the measurements the detectors score it by.

    ``contrast`` is the median top-hat (or black-hat) response over the mark, in grey levels (0-255).
    ``plateau`` is the share of its pixels within 3 grey levels of their most common value: near 1 for the
    flat fill of a digital overlay, low for anatomy and noise. ``sharpness`` is the median morphological
    gradient on its outline divided by ``contrast``: about 1 for a step edge, well below for a soft one.
    ``border_distance`` is the distance from its centre to the nearest image edge, as a fraction of the
    image's short side. ``extremity`` is how close its mean grey level is to the image's extreme in its
    polarity (1 = as bright as the brightest 0.5% of the image for bright marks, as dark as the darkest for
    dark marks). ``elongation`` is the ratio of the major to the minor axis of the mark's second moments:
    about 1 to 2 for letters, rings and discs, 4 and more for wires, clips and bone edges. ``enclosed`` is the
    share of its bounding box taken by the holes it encloses (an image edge it touches counts as closing it):
    around 0.5 for the ring of a circled letter, 0 for letters without counters and for anatomy.
    """

    x: int
    y: int
    w: int
    h: int
    area: int
    polarity: Polarity
    element: int
    contrast: float
    plateau: float
    sharpness: float
    border_distance: float
    extremity: float
    elongation: float
    enclosed: float = 0.0

    @property
    def fill(self) -> float:
        return self.area / float(self.w * self.h)


@dataclass(frozen=True)
class StrokeSettings:
    """How marks are extracted. Sizes are fractions of the working image's short side.

    ``letter_element`` sizes the structuring element that isolates letter strokes, ``marker_element`` the one
    that isolates whole markers, boxes and discs. ``min_contrast`` (grey levels) thresholds the top-hat;
    marks whose median response is below ``min_median_contrast`` are dropped. Marks taller than
    ``max_height`` or wider than ``max_width`` (fractions of the image) are anatomy, tubes or wires.
    """

    letter_element: float = 1 / 64
    marker_element: float = 1 / 12
    min_contrast: int = 35
    min_median_contrast: int = 45
    min_area: int = 10
    min_size: int = 5
    max_height: float = 0.2
    max_width: float = 0.3
    denoise: str = "median"


def _odd(value: float, minimum: int = 3) -> int:
    size = max(minimum, round(value))
    return size if size % 2 else size + 1


def denoise(pixels: np.ndarray, settings: StrokeSettings) -> np.ndarray:
    import cv2

    if settings.denoise == "median":
        return cv2.medianBlur(pixels, 3)
    if settings.denoise == "gaussian":
        return cv2.GaussianBlur(pixels, (3, 3), 0.8)
    return pixels


def stroke_layers(image: WorkingImage, settings: StrokeSettings) -> list[tuple[Polarity, int, np.ndarray]]:
    """Top-hat (bright) and black-hat (dark) responses at the letter and marker element sizes.

    A 3x3 median filter first removes the single-pixel noise that would otherwise dominate the small-element
    response on noisy computed radiographs; two-pixel-wide strokes survive it.
    """
    import cv2

    smoothed = denoise(image.pixels, settings)
    short = min(image.shape)
    sizes = sorted({_odd(short * settings.letter_element), _odd(short * settings.marker_element)})
    layers: list[tuple[Polarity, int, np.ndarray]] = []
    for polarity in POLARITIES:
        operation = cv2.MORPH_TOPHAT if polarity == "bright" else cv2.MORPH_BLACKHAT
        for size in sizes:
            element = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
            layers.append((polarity, size, cv2.morphologyEx(smoothed, operation, element)))
    return layers


def stroke_components(image: WorkingImage, settings: StrokeSettings | None = None) -> list[StrokeComponent]:
    """All marks of the working image that pass the size and contrast gates, measured (see the class)."""
    import cv2

    settings = settings or StrokeSettings()
    pixels = denoise(image.pixels, settings)
    height, width = pixels.shape
    short = min(height, width)
    gradient = cv2.morphologyEx(pixels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    low, high = np.percentile(pixels, [0.5, 99.5])
    span = max(float(high - low), 1.0)
    components: list[StrokeComponent] = []
    for polarity, size, response in stroke_layers(image, settings):
        mask = (response >= settings.min_contrast).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area < settings.min_area or max(w, h) < settings.min_size:
                continue
            if h > settings.max_height * height or w > settings.max_width * width:
                continue
            window = (slice(y, y + h), slice(x, x + w))
            member = labels[window] == index
            contrast = float(np.median(response[window][member]))
            if contrast < settings.min_median_contrast:
                continue
            values = pixels[window][member].astype(np.int16)
            mode = int(np.bincount(values, minlength=256).argmax())
            plateau = float(np.mean(np.abs(values - mode) <= 3))
            inner = cv2.erode(member.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            outline = member & ~inner
            sharpness = float(np.median(gradient[window][outline])) / contrast if outline.any() else 0.0
            centre_x, centre_y = x + w / 2.0, y + h / 2.0
            border = min(centre_x, centre_y, width - centre_x, height - centre_y) / short
            moments = cv2.moments(member.astype(np.uint8), binaryImage=True)
            mean = float(values.mean())
            extremity = (mean - low) / span if polarity == "bright" else (high - mean) / span
            components.append(
                StrokeComponent(
                    x=x,
                    y=y,
                    w=w,
                    h=h,
                    area=area,
                    polarity=polarity,
                    element=size,
                    contrast=contrast,
                    plateau=plateau,
                    sharpness=sharpness,
                    border_distance=border,
                    extremity=float(np.clip(extremity, 0.0, 1.5)),
                    elongation=_elongation(moments),
                    enclosed=_enclosed(member, touches=(x == 0, y == 0, x + w == width, y + h == height)),
                )
            )
    return components


def _enclosed(member: np.ndarray, touches: tuple[bool, bool, bool, bool]) -> float:
    """Share of the bounding box inside holes of ``member``; sides on the image edge count as closed."""
    from scipy.ndimage import binary_fill_holes

    if member.shape[0] < 5 or member.shape[1] < 5:
        return 0.0
    left, top, right, bottom = touches
    padded = np.pad(member, 1)
    # A ring cut by the image edge is closed by that edge: mark the padding on those sides as part of the mark.
    if left:
        padded[:, 0] = True
    if top:
        padded[0, :] = True
    if right:
        padded[:, -1] = True
    if bottom:
        padded[-1, :] = True
    holes = binary_fill_holes(padded) & ~padded
    return float(holes.sum()) / member.size


def _elongation(moments: dict[str, float]) -> float:
    """Major/minor axis ratio of a shape from its central second moments."""
    area = moments["m00"]
    if area <= 0:
        return 1.0
    mu20, mu02, mu11 = moments["mu20"] / area, moments["mu02"] / area, moments["mu11"] / area
    spread = np.sqrt(4 * mu11**2 + (mu20 - mu02) ** 2)
    major, minor = (mu20 + mu02 + spread) / 2, (mu20 + mu02 - spread) / 2
    # A one-pixel-wide line has zero minor variance; 1/12 is the variance of a unit-width pixel row.
    return float(np.sqrt(major + 1 / 12) / np.sqrt(max(minor, 0.0) + 1 / 12))


@dataclass(frozen=True)
class CandidateRegion:
    """Marks close enough to each other to be one label, one word or one marker; the box is their tight union."""

    x: int
    y: int
    w: int
    h: int
    components: tuple[StrokeComponent, ...]

    @property
    def polarity(self) -> Polarity:
        """The polarity of the strongest mark (highest contrast x area)."""
        strongest = max(self.components, key=lambda c: c.contrast * c.area)
        return strongest.polarity


def _union_find_groups(count: int, linked: np.ndarray) -> list[list[int]]:
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, 1)), strict=True):
        root_i, root_j = find(int(i)), find(int(j))
        if root_i != root_j:
            parent[root_j] = root_i
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _regions(components: list[StrokeComponent], groups: list[list[int]]) -> list[CandidateRegion]:
    regions = []
    for members in groups:
        chosen = [components[i] for i in members]
        x0 = min(c.x for c in chosen)
        y0 = min(c.y for c in chosen)
        x1 = max(c.x + c.w for c in chosen)
        y1 = max(c.y + c.h for c in chosen)
        regions.append(CandidateRegion(x=x0, y=y0, w=x1 - x0, h=y1 - y0, components=tuple(chosen)))
    regions.sort(key=lambda r: (r.y, r.x))
    return regions


def _boxes(components: list[StrokeComponent]) -> tuple[np.ndarray, ...]:
    x = np.array([c.x for c in components], dtype=float)
    y = np.array([c.y for c in components], dtype=float)
    w = np.array([c.w for c in components], dtype=float)
    h = np.array([c.h for c in components], dtype=float)
    return x, y, w, h


def group_clusters(components: list[StrokeComponent], *, gap: float = 0.4, min_gap: int = 2) -> list[CandidateRegion]:
    """Group marks whose boxes, each grown by ``gap`` x its short side (at least ``min_gap`` px), touch.

    This is the grouping for markers: a circled letter sits inside its ring, the letters and discs of a lead
    marker block touch or nearly touch.
    """
    if not components:
        return []
    x, y, w, h = _boxes(components)
    grow = np.maximum(min_gap, np.floor(gap * np.minimum(w, h)))
    x0, y0, x1, y1 = x - grow, y - grow, x + w + grow, y + h + grow
    linked = (
        (x0[:, None] <= x1[None, :])
        & (x0[None, :] <= x1[:, None])
        & (y0[:, None] <= y1[None, :])
        & (y0[None, :] <= y1[:, None])
    )
    return _regions(components, _union_find_groups(len(components), linked))


def group_lines(
    components: list[StrokeComponent], *, max_gap: float = 1.0, max_height_ratio: float = 2.2
) -> list[CandidateRegion]:
    """Group marks of one polarity into text lines: similar heights, overlapping rows, small gaps.

    Two marks link when their heights differ by at most ``max_height_ratio``, their vertical extents overlap
    by at least half the smaller height, and the horizontal gap between them is at most ``max_gap`` x the
    larger height (or they overlap). Marks of different polarity never link.
    """
    if not components:
        return []
    x, y, w, h = _boxes(components)
    bright = np.array([c.polarity == "bright" for c in components])
    small, large = np.minimum(h[:, None], h[None, :]), np.maximum(h[:, None], h[None, :])
    row_overlap = np.minimum(y[:, None] + h[:, None], y[None, :] + h[None, :]) - np.maximum(y[:, None], y[None, :])
    gap = np.maximum(x[:, None], x[None, :]) - np.minimum(x[:, None] + w[:, None], x[None, :] + w[None, :])
    linked = (
        (bright[:, None] == bright[None, :])
        & (large <= max_height_ratio * small)
        & (row_overlap >= 0.5 * small)
        & (gap <= max_gap * large)
    )
    return _regions(components, _union_find_groups(len(components), linked))
