"""Detect burned-in text, laterality markers, boxed labels and bars in a chest X-ray.

A detector takes 2-D float32 grayscale pixels in [0, 1] and returns :class:`TextBox` es in original-pixel
coordinates, each with the detector that found it (``source``), a score in [0, 1] and the recognised text when
there is any. Detectors follow the :class:`TextDetector` protocol and are registered by name, so a stronger one
(a DBNet exported to ONNX, say) can be added with :func:`register_detector` and selected in a
:class:`~cleanup.pipeline.CleanupConfig` without touching the pipeline.

Built in:

``ocr``
    Tesseract 5 run the way X-ray labels need: letter strokes of both polarities are isolated with a
    morphological top-hat (which also flattens the anatomy behind them), grouped into text lines, rendered
    dark-on-white at a common letter height on one contact sheet, and read in one Tesseract call. A line
    counts when Tesseract reads real characters in it with enough confidence.
``glyphs``
    What OCR alone misses: lead markers, circled letters, boxed labels and marker discs. Marks are kept when
    they have the signature of an overlay (high contrast with step edges, or a flat digital fill), or of a
    lead marker near the image border (bright as the brightest anatomy, sharp-edged).
``bars``
    Rectangles of the image's extreme grey level along an edge (anonymisation bars).
``xray`` (the default)
    All three, merged (overlapping boxes become their union) and grown to the flat frame of a boxed label.

One job, and so one module despite its length: the detectors of burned-in text and markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cleanup.component import RecordedSettings
from cleanup.strokes import (
    CandidateRegion,
    Polarity,
    StrokeComponent,
    StrokeSettings,
    WorkingImage,
    check_pixels,
    group_clusters,
    group_lines,
    stroke_components,
    working_image,
)


@dataclass(frozen=True)
class TextBox:
    """A detected text or marker region in original-image pixels.

    ``source`` names the detector (several, joined by ``+``, after a merge); ``score`` is its confidence in
    [0, 1]; ``text`` is what OCR read, if anything; ``polarity`` says whether the marks are brighter or darker
    than their surroundings, which the segmenter uses to pick glyph pixels.
    """

    x: int
    y: int
    w: int
    h: int
    source: str
    score: float
    text: str | None = None
    polarity: Polarity | None = None

    def __post_init__(self) -> None:
        if self.w <= 0 or self.h <= 0:
            raise ValueError(f"A box needs a positive width and height, got {self.w}x{self.h}.")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"A box score must lie in [0, 1], got {self.score}.")

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def corners(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) with exclusive x1, y1."""
        return self.x, self.y, self.x + self.w, self.y + self.h

    def intersection(self, other: TextBox) -> int:
        width = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        height = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(0, width) * max(0, height)

    def iou(self, other: TextBox) -> float:
        shared = self.intersection(other)
        return shared / float(self.area + other.area - shared)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextBox:
        return cls(**data)


@runtime_checkable
class TextDetector(Protocol):
    """Anything that finds text boxes in a 2-D float32 image in [0, 1]."""

    name: str

    def detect(self, pixels: np.ndarray) -> tuple[TextBox, ...]: ...

    def settings(self) -> dict[str, Any]:
        """The detector's parameters, JSON-serialisable, recorded with every cleanup result."""
        ...


DetectorFactory = Callable[..., TextDetector]
_REGISTRY: dict[str, DetectorFactory] = {}


def register_detector(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Register a detector factory (a class or function taking keyword options) under ``name``."""

    def decorator(factory: DetectorFactory) -> DetectorFactory:
        if name in _REGISTRY:
            raise ValueError(f"A detector named {name!r} is already registered.")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_detectors() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make_detector(name: str, **options: Any) -> TextDetector:
    """Build the detector registered as ``name`` with keyword ``options``.

    ``name`` may also join registered names with ``+`` (``"ocr+bars"``) for a :class:`CompositeDetector`.
    """
    if "+" in name:
        if options:
            raise ValueError("Options cannot be passed to an ad-hoc composite; register a factory instead.")
        return CompositeDetector([make_detector(part.strip()) for part in name.split("+")])
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_detectors())
        raise ValueError(f"Unknown text detector {name!r}; registered detectors: {known}.") from None
    return factory(**options)


def merge_boxes(boxes: Iterable[TextBox], *, min_overlap: float = 0.3) -> tuple[TextBox, ...]:
    """Merge boxes that overlap into their union, repeatedly, until no two overlap enough.

    Two boxes merge when their intersection is at least ``min_overlap`` of the smaller one's area: a word read
    by OCR and the same word found as glyphs become one box, while neighbouring but distinct labels stay apart.
    The merged box keeps the highest score, every source (joined with ``+``, sorted), the OCR text (joined with
    spaces in reading order) and the polarity when all parts agree.
    """
    pending = sorted(boxes, key=lambda b: (b.y, b.x))
    merged = True
    while merged:
        merged = False
        result: list[TextBox] = []
        for box in pending:
            for index, kept in enumerate(result):
                shared = box.intersection(kept)
                if shared and shared >= min_overlap * min(box.area, kept.area):
                    result[index] = _union(kept, box)
                    merged = True
                    break
            else:
                result.append(box)
        pending = result
    return tuple(sorted(pending, key=lambda b: (b.y, b.x)))


def _union(first: TextBox, second: TextBox) -> TextBox:
    x0, y0 = min(first.x, second.x), min(first.y, second.y)
    x1 = max(first.x + first.w, second.x + second.w)
    y1 = max(first.y + first.h, second.y + second.h)
    sources = sorted(set(first.source.split("+")) | set(second.source.split("+")))
    ordered = sorted((first, second), key=lambda b: (b.y // max(1, min(first.h, second.h)), b.x))
    texts = [b.text for b in ordered if b.text]
    return TextBox(
        x=x0,
        y=y0,
        w=x1 - x0,
        h=y1 - y0,
        source="+".join(sources),
        score=max(first.score, second.score),
        text=" ".join(texts) if texts else None,
        polarity=first.polarity if first.polarity == second.polarity else None,
    )


def _to_original(image: WorkingImage, x: int, y: int, w: int, h: int, **fields: Any) -> TextBox:
    ox, oy, ow, oh = image.box_to_original(x, y, w, h)
    return TextBox(x=ox, y=oy, w=max(1, ow), h=max(1, oh), **fields)


# --------------------------------------------------------------------------------------------------- ocr


_WORD_CHARACTERS = re.compile(r"[A-Za-z0-9ÄÖÜäöüß]")


@register_detector("ocr")
@dataclass
class OcrDetector(RecordedSettings):
    """Tesseract on a contact sheet of top-hat-isolated text lines (see the module docstring).

    ``min_confidence`` (0-100) is the Tesseract word confidence a word needs (``short_word_confidence`` for
    words of two characters, which Tesseract also "reads" in rib edges); a word needs at least
    ``min_characters`` letters or digits, making up most of it, except the single laterality letters in
    ``marker_letters``, which need ``marker_confidence``. ``max_lines`` bounds the work per image (the
    strongest lines are read). ``letter_height`` is the height, in pixels, each line is scaled to on the
    sheet (Tesseract reads best at 20-40 px); lines are never shrunk and enlarged at most ``max_zoom``. A
    word that reads as text marks its whole line (Tesseract often drops the last letters of a word).
    """

    max_side: int = 1024
    min_confidence: float = 80.0
    short_word_confidence: float = 93.0
    min_characters: int = 2
    marker_letters: str = "LR"
    marker_confidence: float = 85.0
    max_lines: int = 16
    letter_height: int = 24
    max_zoom: float = 4.0
    max_line_height: float = 0.12
    psm: int = 11
    # Letter strokes one or two pixels wide (8-bit labels downscaled with the image) do not survive a median
    # filter; Tesseract itself rejects the noise that gets through.
    strokes: StrokeSettings = field(default_factory=lambda: StrokeSettings(denoise="none"))
    name: str = "ocr"

    def detect(self, pixels: np.ndarray) -> tuple[TextBox, ...]:
        image = working_image(pixels, self.max_side)
        lines = self.text_lines(image)
        if not lines:
            return ()
        return self.read_lines(image, lines)

    def text_lines(self, image: WorkingImage) -> list[CandidateRegion]:
        """Candidate text lines: letter-scale marks grouped into rows, the strongest ``max_lines`` of them."""
        components = stroke_components(image, self.strokes)
        if not components:
            return []
        letter_element = min(c.element for c in components)
        letters = [c for c in components if c.element == letter_element]
        height, width = image.shape
        lines = [
            line
            for line in group_lines(letters)
            if 5 <= line.h <= self.max_line_height * height and line.w <= 0.5 * width
        ]
        lines.sort(key=_line_strength, reverse=True)
        return lines[: self.max_lines]

    def read_lines(self, image: WorkingImage, lines: Sequence[CandidateRegion]) -> tuple[TextBox, ...]:
        from cleanup.ocr import read_words

        sheet, slots = _contact_sheet(image, lines, self.letter_height, self.max_zoom, self.strokes)
        boxes = []
        for word in read_words(sheet, psm=self.psm):
            slot = _slot_of(slots, word.y + word.h / 2.0)
            if slot is None or not self._is_text(word.text, word.confidence):
                continue
            x = slot.x + (word.x - slot.left) / slot.zoom
            y = slot.y + (word.y - slot.top) / slot.zoom
            # Tesseract often drops a word's last letters or splits it; the line it sits on is text throughout.
            line = slot.line
            x0, y0 = min(int(np.floor(x)), line.x), min(int(np.floor(y)), line.y)
            x1 = max(int(np.ceil(x + word.w / slot.zoom)), line.x + line.w)
            y1 = max(int(np.ceil(y + word.h / slot.zoom)), line.y + line.h)
            boxes.append(
                _to_original(
                    image,
                    x0,
                    y0,
                    max(1, x1 - x0),
                    max(1, y1 - y0),
                    source=self.name,
                    score=round(min(1.0, word.confidence / 100.0), 3),
                    text=word.text,
                    polarity=slot.polarity,
                )
            )
        return merge_boxes(boxes)

    def _is_text(self, text: str, confidence: float) -> bool:
        characters = _WORD_CHARACTERS.findall(text)
        if len(characters) == 1 and text.strip("()[]{}.,:;'\"") in tuple(self.marker_letters):
            return confidence >= self.marker_confidence
        needed = self.short_word_confidence if len(characters) <= 2 else self.min_confidence
        return confidence >= needed and len(characters) >= self.min_characters and len(characters) >= 0.6 * len(text)


def _line_strength(line: CandidateRegion) -> float:
    # Several crisp, high-contrast marks in a row look like a word; a single soft blob does not.
    return sum(c.contrast * min(c.sharpness, 1.2) * (0.5 + c.plateau) * c.area for c in line.components) * (
        min(len(line.components), 6) ** 0.5
    )


@dataclass(frozen=True)
class _Slot:
    x: int
    y: int
    zoom: float
    left: int
    top: int
    bottom: int
    polarity: Polarity
    line: CandidateRegion


def _contact_sheet(
    image: WorkingImage,
    lines: Sequence[CandidateRegion],
    letter_height: int,
    max_zoom: float,
    settings: StrokeSettings,
) -> tuple[np.ndarray, list[_Slot]]:
    """Render each line's strokes dark on white, scaled to ``letter_height``, stacked on one page."""
    import cv2

    height, width = image.shape
    element_size = min(c.element for line in lines for c in line.components)
    element = cv2.getStructuringElement(cv2.MORPH_RECT, (element_size, element_size))
    responses = {
        "bright": cv2.morphologyEx(image.pixels, cv2.MORPH_TOPHAT, element),
        "dark": cv2.morphologyEx(image.pixels, cv2.MORPH_BLACKHAT, element),
    }
    margin = 24
    tiles: list[tuple[np.ndarray, int, int, float, Polarity, CandidateRegion]] = []
    for line in lines:
        polarity = line.polarity
        letter = float(np.median([c.h for c in line.components]))
        zoom = float(np.clip(letter_height / max(letter, 1.0), 1.0, max_zoom))
        pad = max(4, int(0.5 * letter))
        x0, y0 = max(0, line.x - pad), max(0, line.y - pad)
        x1, y1 = min(width, line.x + line.w + pad), min(height, line.y + line.h + pad)
        response = responses[polarity][y0:y1, x0:x1].astype(np.float32)
        # Ink from a quarter of the strongest response up: the faint remainder of anatomy stays white.
        top = max(float(np.percentile(response, 99)), float(settings.min_median_contrast))
        ink = np.clip((response - 0.25 * top) / (0.75 * top), 0.0, 1.0)
        tile = cv2.resize(255.0 * (1.0 - ink), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        tiles.append((np.clip(tile, 0, 255).astype(np.uint8), x0, y0, zoom, polarity, line))
    sheet_width = max(t[0].shape[1] for t in tiles) + 2 * margin
    sheet_height = sum(t[0].shape[0] + margin for t in tiles) + margin
    sheet = np.full((sheet_height, sheet_width), 255, np.uint8)
    slots = []
    top_edge = margin
    for tile, x0, y0, zoom, polarity, line in tiles:
        tile_height, tile_width = tile.shape
        sheet[top_edge : top_edge + tile_height, margin : margin + tile_width] = tile
        slots.append(_Slot(x0, y0, zoom, margin, top_edge, top_edge + tile_height, polarity, line))
        top_edge += tile_height + margin
    return sheet, slots


def _slot_of(slots: Sequence[_Slot], centre_y: float) -> _Slot | None:
    for slot in slots:
        if slot.top <= centre_y < slot.bottom:
            return slot
    return None


# ------------------------------------------------------------------------------------------------ glyphs


@register_detector("glyphs")
@dataclass
class GlyphDetector(RecordedSettings):
    """Markers, circled letters, boxed labels and discs, from stroke measurements alone (no OCR).

    Marks more elongated than ``max_elongation`` (rods: clips, wires, tube segments, screws) and slivers along
    the image edge are dropped. Of the rest, a mark is kept when

    * it looks like an overlay anywhere in the image: contrast of at least ``overlay_contrast`` grey levels
      with step edges (``overlay_sharpness``), or a flat fill (``flat_plateau`` of its pixels on one grey
      level, ``flat_contrast``, ``flat_sharpness``), or a ring around a hole (``ring_enclosed`` of its box:
      the circle of a circled letter);
    * or it looks like a lead marker within ``border_band`` of the short side from an edge: ``marker_contrast``,
      ``marker_sharpness`` and at least ``marker_extremity`` as bright as the image's brightest anatomy; or a
      flat plateau at least ``flat_marker_extremity`` bright, ``flat_marker_sharpness`` sharp and
      ``flat_marker_size`` of the short side long (lead letters, discs); or the brightest thing in the image
      with soft edges (metal off the detector plane).

    Kept marks are grouped into clusters; clusters covering more than ``max_area`` of the image are split into
    touching parts, and clusters shorter than ``min_size`` of the short side are dropped. A cluster's score
    grows with its strongest mark's contrast and sharpness. The thresholds were set on the 40 annotated CXRs
    of the shared set and checked on rendered labels (``benchmarks/cleanup_eval.py``).
    """

    max_side: int = 1024
    overlay_contrast: float = 100.0
    overlay_sharpness: float = 0.9
    flat_plateau: float = 0.5
    flat_contrast: float = 60.0
    flat_sharpness: float = 0.8
    border_band: float = 0.15
    marker_contrast: float = 70.0
    marker_sharpness: float = 0.7
    marker_extremity: float = 0.8
    flat_marker_extremity: float = 0.85
    flat_marker_sharpness: float = 0.5
    flat_marker_size: float = 0.02
    min_thickness: int = 3
    ring_enclosed: float = 0.3
    max_area: float = 0.015
    min_size: float = 0.025
    max_elongation: float = 4.0
    strokes: StrokeSettings = field(default_factory=lambda: StrokeSettings(denoise="none"))
    name: str = "glyphs"

    def detect(self, pixels: np.ndarray) -> tuple[TextBox, ...]:
        image = working_image(pixels, self.max_side)
        kept = [c for c in stroke_components(image, self.strokes) if self.looks_like_marker(c, image)]
        boxes = []
        image_area = image.shape[0] * image.shape[1]
        clusters = []
        for cluster in group_clusters(kept):
            if cluster.w * cluster.h <= self.max_area * image_area:
                clusters.append(cluster)
            else:
                # A marker taped next to an implant joins its cluster; only marks that touch stay together.
                parts = group_clusters(list(cluster.components), gap=0.0, min_gap=1)
                clusters.extend(p for p in parts if p.w * p.h <= self.max_area * image_area)
        for cluster in clusters:
            if max(cluster.w, cluster.h) < self.min_size * min(image.shape):
                continue  # specks: a letter or marker is at least a few percent of the image tall
            strongest = max(cluster.components, key=lambda c: c.contrast)
            score = float(np.clip(strongest.contrast / 255.0 * min(strongest.sharpness, 1.0) + 0.3, 0, 1))
            boxes.append(
                _to_original(
                    image,
                    cluster.x,
                    cluster.y,
                    cluster.w,
                    cluster.h,
                    source=self.name,
                    score=round(score, 3),
                    polarity=cluster.polarity,
                )
            )
        return merge_boxes(boxes)

    def looks_like_marker(self, mark: StrokeComponent, image: WorkingImage) -> bool:
        height, width = image.shape
        touches_edge = mark.x == 0 or mark.y == 0 or mark.x + mark.w == width or mark.y + mark.h == height
        if touches_edge and min(mark.w, mark.h) <= self.min_thickness + 1:
            return False  # a sliver along the image edge: collimator or detector border, not a label
        if mark.elongation > self.max_elongation:
            return False  # a rod: clip, wire or tube segment, screw, bone edge (or a lone "l", which OCR reads)
        if mark.contrast >= self.overlay_contrast and mark.sharpness >= self.overlay_sharpness:
            return True
        if mark.enclosed >= self.ring_enclosed and mark.contrast >= self.flat_contrast and mark.elongation <= 1.5:
            return True  # a ring around a hole: the circle of a circled letter, a ring marker
        if (
            mark.plateau >= self.flat_plateau
            and mark.contrast >= self.flat_contrast
            and mark.sharpness >= self.flat_sharpness
        ):
            return True
        if mark.border_distance > self.border_band:
            return False
        lead_marker = (
            mark.contrast >= self.marker_contrast
            and mark.sharpness >= self.marker_sharpness
            and mark.extremity >= self.marker_extremity
        )
        # Nothing in the image is brighter: metal. Its edges may be soft (the marker lay off the detector).
        brightest = (
            mark.extremity >= 1.0
            and mark.contrast >= self.flat_contrast
            and mark.sharpness >= self.flat_marker_sharpness
            and mark.elongation <= 3.0
        )
        # Lead letters and discs in the collimated margin: a flat plateau as bright as the brightest bone.
        flat_marker = (
            max(mark.w, mark.h) >= self.flat_marker_size * min(image.shape)
            and mark.plateau >= self.flat_plateau
            and mark.extremity >= self.flat_marker_extremity
            and mark.sharpness >= self.flat_marker_sharpness
        )
        return lead_marker or flat_marker or brightest


# -------------------------------------------------------------------------------------------------- bars


@register_detector("bars")
@dataclass
class BarDetector(RecordedSettings):
    """Rectangles of the image's darkest (or brightest) grey level lying along an image edge.

    A bar is a run of pixels within ``tolerance`` grey levels (of 255) of the image's minimum or maximum that
    fills at least ``min_fill`` of its bounding box, touches an edge, is elongated (``min_aspect``), at least
    ``min_thickness`` working pixels (and 0.6% of the short side) thick and ``min_length`` of the image side it
    runs along long, but not the whole side (``max_length``): a full-width strip is the detector's border, not
    an anonymisation bar.
    """

    max_side: int = 1024
    tolerance: int = 1
    min_fill: float = 0.95
    min_thickness: int = 4
    min_length: float = 0.15
    max_length: float = 0.95
    min_aspect: float = 3.0
    name: str = "bars"

    def detect(self, pixels: np.ndarray) -> tuple[TextBox, ...]:
        import cv2

        image = working_image(pixels, self.max_side)
        u8 = image.pixels
        height, width = u8.shape
        boxes = []
        for polarity, extreme in (("dark", int(u8.min())), ("bright", int(u8.max()))):
            mask = (np.abs(u8.astype(np.int16) - extreme) <= self.tolerance).astype(np.uint8)
            # Opening cuts the one-pixel bridges that join a bar to the image's own black border.
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
            for index in range(1, count):
                x, y, w, h, area = (int(v) for v in stats[index])
                if not self._is_bar(x, y, w, h, area, width, height):
                    continue
                boxes.append(_to_original(image, x, y, w, h, source=self.name, score=0.9, polarity=polarity))
        return tuple(boxes)

    def _is_bar(self, x: int, y: int, w: int, h: int, area: int, width: int, height: int) -> bool:
        if area < self.min_fill * w * h or min(w, h) < max(self.min_thickness, 0.006 * min(width, height)):
            return False
        if max(w, h) < self.min_aspect * min(w, h):
            return False
        if not (x == 0 or y == 0 or x + w == width or y + h == height):
            return False
        edge = width if w >= h else height
        return self.min_length * edge <= max(w, h) <= self.max_length * edge


# --------------------------------------------------------------------------------------------- composite


class CompositeDetector:
    """Run several detectors (in threads: Tesseract and OpenCV release the GIL) and merge their boxes.

    With ``expand_frames`` each merged box grows to the flat frame around it when it sits on one, so a boxed
    label is removed with its box (see :func:`expand_to_frame`).
    """

    def __init__(
        self,
        detectors: Sequence[TextDetector],
        *,
        name: str | None = None,
        expand_frames: bool = False,
        min_overlap: float = 0.3,
        parallel: bool = True,
    ) -> None:
        if not detectors:
            raise ValueError("A composite detector needs at least one detector.")
        self.detectors = tuple(detectors)
        self.name = name or "+".join(d.name for d in self.detectors)
        self.expand_frames = expand_frames
        self.min_overlap = min_overlap
        self.parallel = parallel

    def settings(self) -> dict[str, Any]:
        return {
            "detectors": {d.name: d.settings() for d in self.detectors},
            "expand_frames": self.expand_frames,
            "min_overlap": self.min_overlap,
        }

    def detect(self, pixels: np.ndarray) -> tuple[TextBox, ...]:
        pixels = check_pixels(pixels)
        if self.parallel and len(self.detectors) > 1:
            with ThreadPoolExecutor(max_workers=len(self.detectors)) as pool:
                found = list(pool.map(lambda d: d.detect(pixels), self.detectors))
        else:
            found = [d.detect(pixels) for d in self.detectors]
        boxes = merge_boxes((box for group in found for box in group), min_overlap=self.min_overlap)
        if self.expand_frames:
            boxes = merge_boxes((expand_to_frame(pixels, box) for box in boxes), min_overlap=self.min_overlap)
        return boxes


@register_detector("xray")
def xray_detector(
    *, ocr: dict[str, Any] | None = None, glyphs: dict[str, Any] | None = None, bars: dict[str, Any] | None = None
) -> CompositeDetector:
    """The default detector: OCR, glyphs and bars, merged, boxes grown to their label frames."""
    return CompositeDetector(
        [OcrDetector(**(ocr or {})), GlyphDetector(**(glyphs or {})), BarDetector(**(bars or {}))],
        name="xray",
        expand_frames=True,
    )


def expand_to_frame(
    pixels: np.ndarray, box: TextBox, *, tolerance: float = 3 / 255, max_growth: float = 8.0, gap: int = 2
) -> TextBox:
    """Grow ``box`` to the flat rectangle it is drawn on, if it is drawn on one.

    Burned-in labels often sit on a uniform grey frame ("Bettaufnahme" on a dark box, a boxed "L"). When most
    of a one-pixel ring ``gap`` pixels outside the box (clear of the glyphs' anti-aliased edges) is flat (at
    most ``tolerance`` of grey-level range in any 3x3 neighbourhood, which allows a gently shaded frame), the
    flat pixels connected to the ring are taken as the frame. If frame plus box fill at least 90% of their
    bounding rectangle, and that rectangle is at most ``max_growth`` times the box's area, the box becomes the
    rectangle. Anything else (a label on anatomy, on a large black border) is returned unchanged.
    """
    import cv2

    height, width = pixels.shape
    x0, y0, x1, y1 = box.corners
    # The box grown by the gap (gx0..gx1) is taken as part of the frame; the ring is the pixel row around it.
    gx0, gy0, gx1, gy1 = max(0, x0 - gap), max(0, y0 - gap), min(width, x1 + gap), min(height, y1 + gap)
    rx0, ry0, rx1, ry1 = max(0, gx0 - 1), max(0, gy0 - 1), min(width, gx1 + 1), min(height, gy1 + 1)
    ring = np.ones((ry1 - ry0, rx1 - rx0), bool)
    ring[gy0 - ry0 : gy1 - ry0, gx0 - rx0 : gx1 - rx0] = False
    # Search a window around the box big enough for any frame we would accept.
    grow = int(np.ceil(np.sqrt(max_growth) * max(box.w, box.h)))
    wx0, wy0, wx1, wy1 = max(0, x0 - grow), max(0, y0 - grow), min(width, x1 + grow), min(height, y1 + grow)
    window = pixels[wy0:wy1, wx0:wx1]
    # "Flat" allows the gentle shading some label frames have: at most ``tolerance`` of range in each 3x3.
    # The level test also catches a constant frame's outermost pixels, whose 3x3 neighbourhood leaves the frame.
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(window, kernel) - cv2.erode(window, kernel)
    ring_window = (slice(ry0 - wy0, ry1 - wy0), slice(rx0 - wx0, rx1 - wx0))
    level = float(np.median(window[ring_window][ring])) if ring.any() else 0.0
    smooth = (spread <= tolerance).astype(np.uint8)
    rim = cv2.dilate(smooth, kernel).astype(bool) & (np.abs(window - level) <= tolerance)
    flat = (smooth.astype(bool) | rim).astype(np.uint8)
    ring_flat = flat[ring_window][ring]
    if ring_flat.size == 0 or ring_flat.mean() < 0.6:
        return box
    _, labels = cv2.connectedComponents(flat, connectivity=4)
    ring_labels = labels[ry0 - wy0 : ry1 - wy0, rx0 - wx0 : rx1 - wx0][ring]
    touching = np.unique(ring_labels[ring_labels > 0])
    frame = np.isin(labels, touching)
    frame[gy0 - wy0 : gy1 - wy0, gx0 - wx0 : gx1 - wx0] = True
    ys, xs = np.nonzero(frame)
    fx0, fy0, fx1, fy1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    frame_area = (fx1 - fx0) * (fy1 - fy0)
    # A frame reaching the edge of the search window (not of the image) is bigger than any label frame.
    touches_window = (
        (fx0 == 0 and wx0 > 0)
        or (fy0 == 0 and wy0 > 0)
        or (fx1 == wx1 - wx0 and wx1 < width)
        or (fy1 == wy1 - wy0 and wy1 < height)
    )
    if touches_window or frame_area > max_growth * box.area or frame.sum() < 0.9 * frame_area:
        return box
    return TextBox(
        x=int(wx0 + fx0),
        y=int(wy0 + fy0),
        w=int(fx1 - fx0),
        h=int(fy1 - fy0),
        source=box.source,
        score=box.score,
        text=box.text,
        polarity=box.polarity,
    )
