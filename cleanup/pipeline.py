"""Clean one X-ray: detect burned-in text and markers, segment them, inpaint them, and check what is left.

:func:`clean_image` is the entry point. It takes 2-D float32 grayscale pixels in [0, 1] (what
``imaging.read.read_image`` returns) and a :class:`CleanupConfig`, and returns a :class:`CleanupResult` with
the cleaned pixels, the removal mask (uint8, 0 or 255, ready to be stored as a PNG), the boxes found before and
after, and how long each stage took. An image without text is a normal outcome: it comes back unchanged with
``changed=False``. Pixels outside the dilated mask are never modified (asserted before returning).

Models (SAM, Stable Diffusion inpainting) are loaded once per process and kept in a cache;
:func:`clear_model_cache` empties it. No Django here: the Django app stores the result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cleanup.detect import TextBox, TextDetector, make_detector
from cleanup.inpaint import DEFAULT_PROMPT, ClassicalInpainter, Inpainter, StableDiffusionInpainter
from cleanup.model_cache import clear_model_cache
from cleanup.segment import GlyphSegmenter, SamSegmenter, Segmenter, dilate_mask
from cleanup.strokes import check_pixels

__all__ = ["CleanupConfig", "CleanupResult", "build_stages", "clean_image", "clear_model_cache"]


@dataclass(frozen=True)
class CleanupConfig:
    """What to run and how. Defaults: the ``xray`` detector, glyph masks, classical (Telea) inpainting.

    ``segmenter``: "auto" (SAM when ``sam_checkpoint`` is set, else glyph threshold), "sam" or "glyphs".
    ``inpainter``: "auto" (Stable Diffusion when ``inpainting_model`` is set, else classical), "sd" or
    "classical". ``dilation_kernel`` x ``dilation_kernel`` square, ``dilation_iterations`` times, grows the
    mask before inpainting (5 and 2, as in the reference pipeline). ``verify`` runs the detector again on the
    cleaned image and records what it still finds. ``device`` is "auto", "cpu", "cuda", "xpu" or "mps" (with an
    optional ":index"), as :func:`generation.devices.select_device` takes it.
    """

    detector: str = "xray"
    detector_options: Mapping[str, Any] = field(default_factory=dict)
    segmenter: str = "auto"
    sam_checkpoint: str | None = None
    sam_model_type: str = "auto"
    inpainter: str = "auto"
    inpainting_model: str | None = None
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str | None = "text, letters, numbers, markers, watermark"
    inpainting_steps: int = 50
    guidance_scale: float = 7.5
    inpainting_size: int = 512
    seed: int = 0
    classical_method: str = "telea"
    classical_radius: int = 5
    dilation_kernel: int = 5
    dilation_iterations: int = 2
    verify: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.segmenter not in ("auto", "sam", "glyphs"):
            raise ValueError(f"Unknown segmenter {self.segmenter!r}; use auto, sam or glyphs.")
        if self.inpainter not in ("auto", "sd", "classical"):
            raise ValueError(f"Unknown inpainter {self.inpainter!r}; use auto, sd or classical.")
        if self.segmenter == "sam" and not self.sam_checkpoint:
            raise ValueError("segmenter='sam' needs sam_checkpoint, the path of a sam_vit_*.pth file.")
        if self.inpainter == "sd" and not self.inpainting_model:
            raise ValueError("inpainter='sd' needs inpainting_model, the folder of stable-diffusion-2-inpainting.")
        if self.dilation_kernel < 1 or self.dilation_iterations < 0:
            raise ValueError("dilation_kernel must be at least 1 and dilation_iterations at least 0.")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["detector_options"] = dict(self.detector_options)
        return values


@dataclass(frozen=True)
class CleanupResult:
    """What cleaning one image did.

    ``cleaned`` has the input's shape and dtype (float32); ``mask`` is the dilated removal mask as uint8
    (255 = removed and inpainted, 0 = untouched). ``boxes`` are the detections on the original, ``residual``
    those on the cleaned image (empty when verification is off or found nothing). ``timings`` are seconds per
    stage. ``changed`` is whether any pixel was modified.
    """

    cleaned: np.ndarray
    mask: np.ndarray
    detector: str
    detector_settings: dict[str, Any]
    segmenter: str
    segmenter_settings: dict[str, Any]
    inpainter: str
    inpainter_settings: dict[str, Any]
    boxes: tuple[TextBox, ...]
    residual: tuple[TextBox, ...]
    verified: bool
    timings: dict[str, float]
    changed: bool

    @property
    def masked_pixels(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def residual_text(self) -> tuple[str, ...]:
        """What OCR still reads in the cleaned image."""
        return tuple(box.text for box in self.residual if box.text)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the pixel arrays, as JSON-serialisable values (the mask is summarised)."""
        height, width = self.mask.shape
        return {
            "detector": self.detector,
            "detector_settings": self.detector_settings,
            "segmenter": self.segmenter,
            "segmenter_settings": self.segmenter_settings,
            "inpainter": self.inpainter,
            "inpainter_settings": self.inpainter_settings,
            "boxes": [box.to_dict() for box in self.boxes],
            "residual": [box.to_dict() for box in self.residual],
            "verified": self.verified,
            "timings": dict(self.timings),
            "changed": self.changed,
            "mask": {"width": width, "height": height, "masked_pixels": self.masked_pixels},
        }


def build_stages(config: CleanupConfig) -> tuple[TextDetector, Segmenter, Inpainter]:
    """The detector, segmenter and inpainter ``config`` asks for (models load lazily, on first use)."""
    detector = make_detector(config.detector, **dict(config.detector_options))
    segmenter: Segmenter
    if config.segmenter == "sam" or (config.segmenter == "auto" and config.sam_checkpoint):
        segmenter = SamSegmenter(
            checkpoint=config.sam_checkpoint, model_type=config.sam_model_type, device=config.device
        )
    else:
        segmenter = GlyphSegmenter()
    inpainter: Inpainter
    if config.inpainter == "sd" or (config.inpainter == "auto" and config.inpainting_model):
        inpainter = StableDiffusionInpainter(
            model_path=str(config.inpainting_model),
            prompt=config.prompt,
            negative_prompt=config.negative_prompt,
            steps=config.inpainting_steps,
            guidance_scale=config.guidance_scale,
            seed=config.seed,
            size=config.inpainting_size,
            device=config.device,
        )
    else:
        inpainter = ClassicalInpainter(method=config.classical_method, radius=config.classical_radius)
    return detector, segmenter, inpainter


def clean_image(
    pixels: np.ndarray,
    config: CleanupConfig | None = None,
    *,
    stages: tuple[TextDetector, Segmenter, Inpainter] | None = None,
) -> CleanupResult:
    """Detect, segment, inpaint and verify one image (see the module docstring).

    ``stages`` lets a caller that cleans many images build them once with :func:`build_stages`.
    Raises ``ValueError`` for pixels that are not a 2-D float image in [0, 1].
    """
    config = config or CleanupConfig()
    pixels = check_pixels(pixels)
    detector, segmenter, inpainter = stages or build_stages(config)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    boxes = detector.detect(pixels)
    timings["detect"] = time.perf_counter() - started

    if not boxes:
        return CleanupResult(
            cleaned=pixels.copy(),
            mask=np.zeros(pixels.shape, np.uint8),
            detector=detector.name,
            detector_settings=detector.settings(),
            segmenter=segmenter.name,
            segmenter_settings=segmenter.settings(),
            inpainter=inpainter.name,
            inpainter_settings=inpainter.settings(),
            boxes=(),
            residual=(),
            # Nothing was found and nothing changed: a second pass over the same pixels would find the same.
            verified=config.verify,
            timings=timings,
            changed=False,
        )

    started = time.perf_counter()
    mask = dilate_mask(segmenter.segment(pixels, boxes), config.dilation_kernel, config.dilation_iterations)
    timings["segment"] = time.perf_counter() - started

    started = time.perf_counter()
    cleaned = inpainter.inpaint(pixels, mask)
    timings["inpaint"] = time.perf_counter() - started
    if cleaned.shape != pixels.shape or not np.array_equal(cleaned[~mask], pixels[~mask]):
        raise RuntimeError(f"The {inpainter.name} inpainter changed pixels outside the mask.")

    residual: tuple[TextBox, ...] = ()
    if config.verify:
        started = time.perf_counter()
        residual = detector.detect(cleaned)
        timings["verify"] = time.perf_counter() - started

    return CleanupResult(
        cleaned=cleaned,
        mask=np.where(mask, 255, 0).astype(np.uint8),
        detector=detector.name,
        detector_settings=detector.settings(),
        segmenter=segmenter.name,
        segmenter_settings=segmenter.settings(),
        inpainter=inpainter.name,
        inpainter_settings=inpainter.settings(),
        boxes=boxes,
        residual=residual,
        verified=config.verify,
        timings=timings,
        changed=bool(mask.any()) and not np.array_equal(cleaned, pixels),
    )
