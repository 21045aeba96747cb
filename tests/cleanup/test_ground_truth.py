"""The annotated boxes of the shared chest X-rays, and the matching rules the benchmark scores them with."""

from __future__ import annotations

import csv

import pytest

from cleanup.evaluation import GROUND_TRUTH_LABELS, covered_fraction, load_ground_truth, match_boxes

from .conftest import CXR_DIR, GROUND_TRUTH


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, str]]:
    if not (CXR_DIR / "MANIFEST.csv").is_file():
        pytest.skip(f"shared CXR data not found at {CXR_DIR}")
    with (CXR_DIR / "MANIFEST.csv").open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def ground_truth():
    return load_ground_truth(GROUND_TRUTH)


def test_every_manifest_file_is_annotated_and_nothing_else(manifest, ground_truth):
    assert set(ground_truth) == set(manifest)
    assert all((CXR_DIR / name).is_file() for name in ground_truth)


def test_sizes_match_the_manifest_and_the_decoded_images(manifest, ground_truth):
    from imaging.read import read_image

    for name, image in ground_truth.items():
        assert (image.width, image.height) == (int(manifest[name]["width"]), int(manifest[name]["height"])), name
        pixels = read_image((CXR_DIR / name).read_bytes()).pixels
        assert pixels.shape == (image.height, image.width), name


def test_boxes_lie_inside_their_image_with_known_labels(ground_truth):
    for name, image in ground_truth.items():
        for box in image.boxes:
            assert box.w > 0 and box.h > 0, (name, box)
            assert box.x >= 0 and box.x + box.w <= image.width, (name, box)
            assert box.y >= 0 and box.y + box.h <= image.height, (name, box)
            assert box.label in GROUND_TRUTH_LABELS, (name, box)


def test_images_the_manifest_says_carry_text_have_boxes(manifest, ground_truth):
    for name, row in manifest.items():
        if row["burned_in_text"] == "yes":
            assert ground_truth[name].boxes, name
    # The one DICOM with no visible text has no box; 81 artifacts in all, text read where legible.
    assert ground_truth["dicom/nema_wg04_RG1_J2KI_CR_chest.dcm"].boxes == ()
    assert sum(len(image.boxes) for image in ground_truth.values()) == 81
    texts = {box.text for image in ground_truth.values() for box in image.boxes}
    assert {"Bettaufnahme", "liegend", "Auf Station", "PORTABLE", "ETB"} <= texts


def test_matching_accepts_overlap_partial_covers_and_tight_enclosures_only():
    word = (100, 100, 80, 20)
    # IoU 0.3 or more finds the box; so does covering half of it with several detections.
    assert match_boxes([word], [(110, 100, 80, 20)]).found == (True,)
    assert match_boxes([word], [(100, 100, 25, 20), (130, 100, 20, 20)]).found == (True,)
    assert match_boxes([word], [(100, 100, 20, 20)]).found == (False,)  # IoU 0.25, a quarter covered
    # One box around a marker block of two annotated parts is correct; a box around a quarter of the image
    # that happens to contain the word is not.
    block = [(10, 10, 20, 30), (10, 45, 20, 20)]
    assert match_boxes(block, [(8, 8, 24, 60)]).correct == (True,)
    assert match_boxes([word], [(0, 0, 400, 400)]).correct == (False,)
    assert match_boxes([], [(0, 0, 5, 5)]).score.precision == 0.0
    assert match_boxes([word], []).score.recall == 0.0
    assert covered_fraction(word, [(100, 100, 40, 20)]) == 0.5
