"""Score detected text boxes against annotated ground truth, and load the annotated chest X-ray set.

Matching (used by ``benchmarks/cleanup_eval.py`` and the tests), for one image with ground-truth boxes G and
detected boxes D:

* a ground-truth box g is **found** when some detection overlaps it with IoU >= 0.3, or the union of all
  detections covers at least half of g (a word found as two halves still counts);
* a detection d is **correct** when it overlaps some ground-truth box with IoU >= 0.3, or at least half of d
  lies inside the union of ground-truth boxes, or d contains at least half of some ground-truth box while
  being no larger than four times the ground-truth boxes it touches (one box around a whole marker block of
  letter, initials and disc is right, a box around half the image is not).

Recall = found / |G| and precision = correct / |D|, each summed over images before dividing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Box = tuple[int, int, int, int]

MIN_IOU = 0.3
MIN_COVERED = 0.5
MAX_ENCLOSING_GROWTH = 4.0

GROUND_TRUTH_LABELS = ("text", "marker", "disc", "bar")


@dataclass(frozen=True)
class AnnotatedBox:
    """One annotated artifact: its box in original pixels, its kind and, when legible, its text."""

    x: int
    y: int
    w: int
    h: int
    label: str
    text: str | None

    @property
    def box(self) -> Box:
        return self.x, self.y, self.w, self.h


@dataclass(frozen=True)
class AnnotatedImage:
    file: str
    width: int
    height: int
    boxes: tuple[AnnotatedBox, ...]


@dataclass(frozen=True)
class DetectionScore:
    """Counts behind recall and precision; add them up over images with ``+``."""

    ground_truth: int
    found: int
    detections: int
    correct: int

    @property
    def recall(self) -> float:
        return self.found / self.ground_truth if self.ground_truth else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.detections if self.detections else 1.0

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(
            self.ground_truth + other.ground_truth,
            self.found + other.found,
            self.detections + other.detections,
            self.correct + other.correct,
        )


@dataclass(frozen=True)
class ImageMatch:
    """Which ground-truth boxes were found and which detections were correct, in input order."""

    found: tuple[bool, ...]
    correct: tuple[bool, ...]

    @property
    def score(self) -> DetectionScore:
        return DetectionScore(len(self.found), sum(self.found), len(self.correct), sum(self.correct))


def _area(box: Box) -> int:
    return box[2] * box[3]


def _intersection(a: Box, b: Box) -> int:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


def iou(a: Box, b: Box) -> float:
    shared = _intersection(a, b)
    union = _area(a) + _area(b) - shared
    return shared / union if union else 0.0


def covered_fraction(box: Box, others: Iterable[Box]) -> float:
    """The share of ``box``'s pixels that lie inside at least one of ``others``."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return 0.0
    inside = np.zeros((h, w), bool)
    for ox, oy, ow, oh in others:
        x0, y0, x1, y1 = max(ox, x), max(oy, y), min(ox + ow, x + w), min(oy + oh, y + h)
        if x1 > x0 and y1 > y0:
            inside[y0 - y : y1 - y, x0 - x : x1 - x] = True
    return float(inside.mean())


def match_boxes(ground_truth: Sequence[Box], detections: Sequence[Box]) -> ImageMatch:
    """Apply the matching rules of the module docstring to one image."""
    found = tuple(
        any(iou(g, d) >= MIN_IOU for d in detections) or covered_fraction(g, detections) >= MIN_COVERED
        for g in ground_truth
    )
    correct = []
    for d in detections:
        ok = any(iou(d, g) >= MIN_IOU for g in ground_truth) or covered_fraction(d, ground_truth) >= MIN_COVERED
        if not ok:
            enclosed = [g for g in ground_truth if _intersection(g, d) >= MIN_COVERED * _area(g)]
            touched = sum(_area(g) for g in ground_truth if _intersection(g, d) > 0)
            ok = bool(enclosed) and _area(d) <= MAX_ENCLOSING_GROWTH * touched
        correct.append(ok)
    return ImageMatch(found=found, correct=tuple(correct))


def load_ground_truth(path: Path) -> dict[str, AnnotatedImage]:
    """Read ``tests/cleanup/data/cxr_text_boxes.json`` (or a file of the same shape) keyed by MANIFEST file."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    images = {}
    for file, entry in document["images"].items():
        boxes = tuple(
            AnnotatedBox(
                x=int(b["x"]), y=int(b["y"]), w=int(b["w"]), h=int(b["h"]), label=b["label"], text=b.get("text")
            )
            for b in entry["boxes"]
        )
        images[file] = AnnotatedImage(file=file, width=int(entry["width"]), height=int(entry["height"]), boxes=boxes)
    return images
