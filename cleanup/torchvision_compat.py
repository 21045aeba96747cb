"""Stand-ins for the four torchvision functions ``segment_anything`` imports, for machines without torchvision.

segment-anything 1.0 imports, at module level and nowhere else:

* ``torchvision.ops.boxes.batched_nms`` and ``box_area`` (``automatic_mask_generator.py``), and
* ``torchvision.transforms.functional.resize`` and ``to_pil_image`` (``utils/transforms.py``, used by
  ``SamPredictor.set_image`` through ``ResizeLongestSide.apply_image``).

torchvision has no CPU wheel that matches our pinned torch here, and must not be installed. When (and only
when) it cannot be imported, :func:`import_segment_anything` puts small modules with faithful implementations
of those four functions into ``sys.modules`` for the duration of ``import segment_anything`` and takes them out
again, so other libraries that probe for torchvision (transformers, diffusers) never see a partial one. A real
torchvision, installed or already imported, is always used instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

COMPAT_VERSION = "0.0+cleanup.compat"
_MODULE_NAMES = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.boxes",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


# ------------------------------------------------------------------------------------------- ops.boxes


def box_area(boxes: Any) -> Any:
    """Areas of ``(x1, y1, x2, y2)`` boxes, a tensor of shape [N, 4] -> [N] (as ``torchvision.ops.box_area``)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _box_iou(box: Any, others: Any) -> Any:
    import torch

    top_left = torch.maximum(box[:2], others[:, :2])
    bottom_right = torch.minimum(box[2:], others[:, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return overlap / (area + box_area(others) - overlap)


def nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Boxes are visited in decreasing score order; each kept box suppresses the later ones whose IoU with it is
    strictly greater than ``iou_threshold``. Returns the kept indices (int64) in decreasing score order. Equal
    scores keep their input order (torchvision's kernel does not promise an order for ties).
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes.to(torch.float64) if not boxes.is_floating_point() else boxes
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        index = order[position]
        keep.append(index)
        rest = order[position + 1 :]
        if len(rest):
            suppressed[position + 1 :] |= _box_iou(boxes[index], boxes[rest]) > iou_threshold
    return torch.stack(keep).to(torch.int64)


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Any:
    """Non-maximum suppression within each category ``idxs``, as ``torchvision.ops.batched_nms``.

    Boxes of different categories never suppress each other. Like torchvision, this offsets each category's
    boxes by more than the largest coordinate so that one NMS pass over all boxes is per-category.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# ------------------------------------------------------------------------------- transforms.functional


def to_pil_image(pic: Any, mode: str | None = None) -> Any:
    """An 8-bit or float image (ndarray HxW or HxWxC, or tensor CxHxW or HxW) as a PIL image.

    As ``torchvision.transforms.functional.to_pil_image``: float data (unless ``mode="F"``) is scaled by 255
    and truncated to uint8; one channel gives mode "L" (uint8), "I;16" (uint16), "I" (int32) or "F" (float32);
    three "RGB"; four "RGBA"; ``mode`` converts the result.
    """
    from PIL import Image

    if hasattr(pic, "detach"):  # a torch tensor, channels first
        array = pic.detach().cpu()
        if array.ndim == 3:
            array = array.permute(1, 2, 0)
        array = array.numpy()
    elif isinstance(pic, np.ndarray):
        array = pic
    else:
        raise TypeError(f"pic should be a Tensor or ndarray, got {type(pic).__name__}.")
    if array.ndim not in (2, 3):
        raise ValueError(f"pic should be 2 or 3 dimensional, got {array.ndim} dimensions.")
    if np.issubdtype(array.dtype, np.floating) and mode != "F":
        array = (array * 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        raise ValueError(f"pic should have 1, 3 or 4 channels, got {array.shape[2]}.")
    if array.ndim == 3 and array.dtype != np.uint8:
        raise TypeError(f"Input type {array.dtype} is not supported for {array.shape[2]}-channel images.")
    if array.ndim == 2 and array.dtype.type not in (np.uint8, np.uint16, np.int32, np.float32):
        raise TypeError(f"Input type {array.dtype} is not supported.")
    # Pillow infers "L", "I;16", "I", "F", "RGB" or "RGBA" from the dtype and channel count, as torchvision does.
    image = Image.fromarray(np.ascontiguousarray(array))
    return image.convert(mode) if mode and mode != image.mode else image


def _target_size(height: int, width: int, size: int | Sequence[int], max_size: int | None) -> tuple[int, int]:
    if isinstance(size, int) or len(size) == 1:
        requested = size if isinstance(size, int) else int(size[0])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_long, new_short) if width <= height else (new_short, new_long)
    if max_size is not None:
        raise ValueError("max_size is only allowed when size is a single integer.")
    return int(size[0]), int(size[1])


def resize(
    img: Any, size: int | Sequence[int], interpolation: Any = None, max_size: int | None = None, antialias: Any = True
) -> Any:
    """Resize a PIL image (or a ``[..., H, W]`` tensor) to ``size``, as ``torchvision.transforms.functional.resize``.

    ``size`` is ``(height, width)``, or one integer that the shorter side is matched to (aspect kept, longer
    side truncated, at most ``max_size``). Interpolation is bilinear (torchvision's default), the only mode
    segment_anything uses; PIL images go through ``Image.resize`` exactly as torchvision's PIL path does,
    tensors through ``torch.nn.functional.interpolate(..., antialias=True)`` as its tensor path does.
    """
    if interpolation not in (None, "bilinear", 2):
        raise NotImplementedError("The torchvision compatibility layer only implements bilinear resizing.")
    if hasattr(img, "size") and hasattr(img, "resize") and not hasattr(img, "detach"):
        from PIL import Image

        width, height = img.size
        new_height, new_width = _target_size(height, width, size, max_size)
        if (new_height, new_width) == (height, width):
            return img
        return img.resize((new_width, new_height), Image.BILINEAR)
    if hasattr(img, "detach"):
        import torch

        height, width = img.shape[-2:]
        new_height, new_width = _target_size(int(height), int(width), size, max_size)
        batch = img.reshape(-1, 1, height, width) if img.ndim != 4 else img
        dtype = batch.dtype
        resized = torch.nn.functional.interpolate(
            batch.float(), size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=bool(antialias)
        )
        if not dtype.is_floating_point:
            resized = resized.round().clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max)
        return resized.to(dtype).reshape(*img.shape[:-2], new_height, new_width)
    raise TypeError(f"img should be a PIL Image or Tensor, got {type(img).__name__}.")


# -------------------------------------------------------------------------------------- installation


def torchvision_available() -> bool:
    """Whether a real torchvision is imported already or can be imported."""
    module = sys.modules.get("torchvision")
    if module is not None:
        return not getattr(module, "_cleanup_compat", False)
    try:
        return importlib.util.find_spec("torchvision") is not None
    except ValueError:  # a module without __spec__ in sys.modules: someone else's stand-in; leave it alone
        return True


def _make_module(name: str, attributes: dict[str, Any], package: bool) -> types.ModuleType:
    module = types.ModuleType(name, f"cleanup.torchvision_compat stand-in for {name}")
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=package)
    if package:
        module.__path__ = []
    module._cleanup_compat = True  # type: ignore[attr-defined]
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def compat_modules() -> dict[str, types.ModuleType]:
    """The stand-in modules, by name, ready to go into ``sys.modules``."""
    functional = _make_module(
        "torchvision.transforms.functional", {"resize": resize, "to_pil_image": to_pil_image}, package=False
    )
    transforms = _make_module("torchvision.transforms", {"functional": functional}, package=True)
    boxes = _make_module(
        "torchvision.ops.boxes", {"batched_nms": batched_nms, "box_area": box_area, "nms": nms}, package=False
    )
    ops = _make_module(
        "torchvision.ops", {"boxes": boxes, "batched_nms": batched_nms, "box_area": box_area, "nms": nms}, package=True
    )
    root = _make_module(
        "torchvision", {"ops": ops, "transforms": transforms, "__version__": COMPAT_VERSION}, package=True
    )
    return {
        "torchvision": root,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }


@contextmanager
def compat_installed() -> Iterator[bool]:
    """Put the stand-ins into ``sys.modules`` while the block runs, unless a real torchvision is available.

    Yields whether the stand-ins were installed. They are removed afterwards; modules imported inside the block
    keep the functions they imported.
    """
    if torchvision_available():
        yield False
        return
    modules = compat_modules()
    sys.modules.update(modules)
    try:
        yield True
    finally:
        for name in _MODULE_NAMES:
            if sys.modules.get(name) is modules[name]:
                del sys.modules[name]


def import_segment_anything() -> types.ModuleType:
    """Import ``segment_anything``, with the torchvision stand-ins if (and only if) torchvision is missing."""
    if "segment_anything" in sys.modules:
        return sys.modules["segment_anything"]
    with compat_installed():
        import segment_anything
    return segment_anything
