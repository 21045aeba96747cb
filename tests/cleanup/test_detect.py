"""Text and marker detection on rendered artifacts of known position, on a clean phantom, and on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cleanup.detect import (
    BarDetector,
    CompositeDetector,
    GlyphDetector,
    OcrDetector,
    TextBox,
    available_detectors,
    expand_to_frame,
    make_detector,
    merge_boxes,
    register_detector,
)
from cleanup.evaluation import iou, match_boxes
from cleanup.ocr import tesseract_available
from cleanup.rendered_text import render_boxed_label, render_text

needs_tesseract = pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed")


def _as_tuple(box: TextBox) -> tuple[int, int, int, int]:
    return box.x, box.y, box.w, box.h


@pytest.fixture(scope="module")
def scene_detections(labelled_scene):
    pixels, _ = labelled_scene
    return make_detector("xray").detect(pixels)


@needs_tesseract
@pytest.mark.parametrize(
    "artifact", ["bright_text", "dark_text", "lead_marker", "circled_letter", "boxed_label", "bar"]
)
def test_every_rendered_artifact_is_found_where_it_was_drawn(labelled_scene, scene_detections, artifact):
    _, truth = labelled_scene
    match = match_boxes([truth[artifact]], [_as_tuple(b) for b in scene_detections])
    assert match.found == (True,), f"{artifact} at {truth[artifact]} not in {scene_detections}"


@needs_tesseract
def test_every_detection_in_the_scene_is_one_of_the_drawn_artifacts(labelled_scene, scene_detections):
    _, truth = labelled_scene
    match = match_boxes(list(truth.values()), [_as_tuple(b) for b in scene_detections])
    assert all(match.correct), [b for b, ok in zip(scene_detections, match.correct, strict=True) if not ok]


@needs_tesseract
def test_ocr_reads_the_bright_label_and_reports_its_text(labelled_scene, scene_detections):
    _, truth = labelled_scene
    read = [b for b in scene_detections if b.text and "PORTABLE" in b.text]
    assert read and iou(_as_tuple(read[0]), truth["bright_text"]) >= 0.5
    assert "ocr" in read[0].source.split("+") and read[0].polarity == "bright"


@needs_tesseract
def test_ocr_reads_a_white_label_on_its_own(clean_phantom):
    pixels, truth = render_text(clean_phantom, "Bettaufnahme", x=60, y=420, height=16)
    boxes = OcrDetector().detect(pixels)
    assert [b.text for b in boxes] == ["Bettaufnahme"]
    assert iou(_as_tuple(boxes[0]), truth) >= 0.6


def test_boxed_label_detection_covers_the_grey_frame_not_just_the_letters(labelled_scene, scene_detections):
    _, truth = labelled_scene
    best = max(scene_detections, key=lambda b: iou(_as_tuple(b), truth["boxed_label"]))
    # The letters alone cover about half of the frame; the frame grown from them matches it.
    assert iou(_as_tuple(best), truth["boxed_label"]) >= 0.85


def test_black_bar_comes_from_the_bar_detector_with_its_exact_box(labelled_scene):
    pixels, truth = labelled_scene
    assert [_as_tuple(b) for b in BarDetector().detect(pixels)] == [truth["bar"]]


@needs_tesseract
@pytest.mark.parametrize("name", ["xray", "ocr", "glyphs", "bars"])
def test_a_clean_phantom_has_nothing_to_detect(clean_phantom, name):
    assert make_detector(name).detect(clean_phantom) == ()


def test_large_images_are_detected_at_working_scale_and_mapped_back(clean_phantom):
    import cv2

    big = cv2.resize(clean_phantom, (1536, 1536), interpolation=cv2.INTER_LINEAR)
    pixels, truth = render_text(big, "PORTABLE", x=1000, y=700, height=42)
    boxes = GlyphDetector().detect(pixels)
    # The working image is 1024 px, so coordinates come back scaled by 1.5 and rounded outwards.
    assert match_boxes([truth], [_as_tuple(b) for b in boxes]).found == (True,)
    assert all(b.x + b.w <= 1536 and b.y + b.h <= 1536 for b in boxes)


def test_expand_to_frame_grows_a_label_to_its_flat_box_and_leaves_other_boxes_alone(clean_phantom):
    pixels, frame = render_boxed_label(clean_phantom, "AP", x=200, y=200, height=20, padding=0.6)
    letters = TextBox(frame[0] + 12, frame[1] + 12, frame[2] - 24, frame[3] - 24, source="test", score=0.5)
    grown = expand_to_frame(pixels, letters)
    # Exact up to a one-pixel rim where the anatomy next to the frame happens to share its grey level.
    assert iou(_as_tuple(grown), frame) >= 0.9
    assert grown.intersection(TextBox(*frame, source="truth", score=1.0)) == frame[2] * frame[3]
    on_anatomy = TextBox(150, 300, 30, 12, source="test", score=0.5)
    assert expand_to_frame(pixels, on_anatomy) == on_anatomy


def test_merge_boxes_unions_overlapping_boxes_and_keeps_text_sources_and_score():
    word = TextBox(10, 10, 40, 12, source="ocr", score=0.9, text="AP", polarity="bright")
    glyphs = TextBox(12, 8, 44, 16, source="glyphs", score=0.6, polarity="bright")
    far = TextBox(200, 200, 10, 10, source="bars", score=0.9, polarity="dark")
    merged = merge_boxes([glyphs, far, word])
    assert merged == (
        TextBox(10, 8, 46, 16, source="glyphs+ocr", score=0.9, text="AP", polarity="bright"),
        far,
    )


def test_text_box_rejects_empty_boxes_and_scores_outside_unit_interval():
    with pytest.raises(ValueError, match="positive width and height"):
        TextBox(0, 0, 0, 5, source="x", score=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TextBox(0, 0, 5, 5, source="x", score=1.5)
    box = TextBox(3, 4, 5, 6, source="ocr", score=0.5, text="L", polarity="dark")
    assert TextBox.from_dict(box.to_dict()) == box


def test_registry_names_detectors_builds_composites_and_accepts_new_ones():
    assert {"ocr", "glyphs", "bars", "xray"} <= set(available_detectors())
    composite = make_detector("ocr+bars")
    assert isinstance(composite, CompositeDetector) and composite.name == "ocr+bars"
    assert set(composite.settings()["detectors"]) == {"ocr", "bars"}
    with pytest.raises(ValueError, match=r"registered detectors: .*glyphs"):
        make_detector("dbnet")

    class Everything:
        name = "everything-test"

        def detect(self, pixels):
            return (TextBox(0, 0, pixels.shape[1], pixels.shape[0], source=self.name, score=1.0),)

        def settings(self):
            return {}

    register_detector("everything-test")(Everything)
    assert make_detector("everything-test").detect(np.zeros((16, 16), np.float32))[0].area == 256
    with pytest.raises(ValueError, match="already registered"):
        register_detector("everything-test")(Everything)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((16, 16, 3), np.float32), "2-D grayscale"),
        (np.zeros((16, 16), np.uint8), "float pixels"),
        (np.full((16, 16), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((16, 16), np.nan, np.float32), "NaN"),
        (np.zeros((4, 16), np.float32), "too small"),
    ],
)
def test_bad_pixels_are_refused_with_a_message_naming_the_problem(pixels, message):
    with pytest.raises(ValueError, match=message):
        make_detector("xray").detect(pixels)
