"""The torchvision stand-ins: segment_anything runs on them, they match reference behaviour, and they never
shadow a real torchvision."""

from __future__ import annotations

import sys
import types
from importlib.machinery import ModuleSpec

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from cleanup import torchvision_compat as compat  # noqa: E402


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS in plain numpy: highest score first, drop boxes with IoU > threshold."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        survivors = []
        for other in order:
            x0, y0 = np.maximum(boxes[best, :2], boxes[other, :2])
            x1, y1 = np.minimum(boxes[best, 2:], boxes[other, 2:])
            overlap = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (boxes[best], boxes[other])]
            if overlap / (areas[0] + areas[1] - overlap) <= threshold:
                survivors.append(other)
        order = survivors
    return keep


def _random_boxes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, size=(count, 2))
    sizes = rng.uniform(5, 40, size=(count, 2))
    boxes = np.hstack([corners, corners + sizes]).astype(np.float32)
    return boxes, rng.uniform(0, 1, count).astype(np.float32), rng.integers(0, 3, count)


def test_box_area_is_width_times_height():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 4.0, 5.0]])
    assert compat.box_area(boxes).tolist() == [6.0, 12.0]


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_textbook_loop(seed):
    boxes, scores, _ = _random_boxes(60, seed)
    kept = compat.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3)
    assert kept.dtype == torch.int64 and kept.tolist() == _reference_nms(boxes, scores, 0.3)


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_equals_nms_per_category_merged_by_score(seed):
    boxes, scores, categories = _random_boxes(80, seed)
    expected = []
    for category in np.unique(categories):
        members = np.flatnonzero(categories == category)
        expected += [int(members[i]) for i in _reference_nms(boxes[members], scores[members], 0.5)]
    expected.sort(key=lambda i: -scores[i])
    kept = compat.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(categories), 0.5)
    assert kept.tolist() == expected
    empty = compat.batched_nms(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64


def test_resize_of_a_pil_image_is_pillows_bilinear_resize():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8))
    resized = compat.resize(image, (64, 91))
    assert resized.size == (91, 64)
    assert np.array_equal(np.asarray(resized), np.asarray(image.resize((91, 64), Image.BILINEAR)))
    # One integer matches the shorter side, keeping the aspect (the longer side truncated, as torchvision does).
    assert compat.resize(image, 74).size == (int(74 * 53 / 37), 74)


def test_resize_of_a_tensor_uses_antialiased_bilinear_interpolation():
    tensor = torch.rand(3, 40, 60)
    resized = compat.resize(tensor, (20, 30))
    expected = torch.nn.functional.interpolate(tensor[:, None], size=(20, 30), mode="bilinear", antialias=True)
    assert resized.shape == (3, 20, 30) and torch.allclose(resized, expected[:, 0])


def test_to_pil_image_infers_modes_and_scales_floats_like_torchvision():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert compat.to_pil_image(gray).mode == "L"
    rgb = np.zeros((3, 4, 3), np.uint8)
    assert compat.to_pil_image(rgb).mode == "RGB"
    assert compat.to_pil_image(np.zeros((3, 4, 4), np.uint8)).mode == "RGBA"
    assert np.asarray(compat.to_pil_image(np.full((2, 2), 0.5, np.float32))).tolist() == [[127, 127]] * 2
    chw = torch.zeros(3, 5, 7)
    assert compat.to_pil_image(chw).size == (7, 5)
    with pytest.raises(TypeError, match="Tensor or ndarray"):
        compat.to_pil_image([[0, 1]])


def test_segment_anything_predicts_a_mask_through_the_stand_ins(tiny_sam_checkpoint):
    segment_anything = compat.import_segment_anything()
    from segment_anything.utils import transforms

    assert transforms.resize is compat.resize  # the stand-in was what segment_anything imported
    assert "torchvision" not in sys.modules  # ... and it is gone again
    from cleanup.segment import load_sam

    predictor = segment_anything.SamPredictor(load_sam(tiny_sam_checkpoint))
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=np.array([10, 10, 60, 50]), multimask_output=False)
    assert masks.shape == (1, 90, 120) and masks.dtype == bool and scores.shape == (1,)
    assert predictor.input_size == (192, 256)  # ResizeLongestSide to the tiny model's 256 px


def test_stand_ins_are_installed_only_while_needed_and_never_over_a_real_torchvision(monkeypatch):
    with compat.compat_installed() as installed:
        assert installed and sys.modules["torchvision.ops.boxes"].batched_nms is compat.batched_nms
        assert sys.modules["torchvision"].__spec__ is not None
    assert "torchvision" not in sys.modules and "torchvision.transforms.functional" not in sys.modules

    real = types.ModuleType("torchvision")
    real.__spec__ = ModuleSpec("torchvision", loader=None)
    monkeypatch.setitem(sys.modules, "torchvision", real)
    assert compat.torchvision_available()
    with compat.compat_installed() as installed:
        assert not installed and sys.modules["torchvision"] is real
        assert "torchvision.ops" not in sys.modules
    assert sys.modules["torchvision"] is real
