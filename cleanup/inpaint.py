"""Fill the masked pixels of an X-ray; every pixel outside the mask comes back exactly as it was.

Both inpainters work region by region: the mask's connected parts are grouped into crop windows (each part's
bounding box plus ``context`` pixels, overlapping windows merged), each window is filled on its own at the
image's native resolution, and only masked pixels are copied back. Unlike the reference pipeline, which
resized the whole image to 512 x 512 and back (blurring every pixel), nothing outside the mask is touched.

``ClassicalInpainter``
    OpenCV's Telea (fast marching) or Navier-Stokes inpainting, or scikit-image's biharmonic inpainting, on
    float32 pixels (no 8-bit rounding of 16-bit sources).
``StableDiffusionInpainter``
    ``stable-diffusion-2-inpainting`` (diffusers ``StableDiffusionInpaintPipeline``) from a local folder. Each
    window is made square (so resizing keeps the aspect), resized to the model's size only if it differs,
    inpainted with the prompt ("No text, clean background" by default) from a seeded CPU generator, converted
    to grey, resized back and pasted through the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cleanup.component import RecordedSettings
from cleanup.strokes import check_pixels

DEFAULT_PROMPT = "No text, clean background"


@runtime_checkable
class Inpainter(Protocol):
    name: str

    def inpaint(self, pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """A new image: ``pixels`` with the ``mask`` pixels filled in, every other pixel unchanged."""
        ...

    def settings(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Window:
    """A crop window ``[y0:y1, x0:x1]`` of the image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def overlaps(self, other: Window) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def union(self, other: Window) -> Window:
        return Window(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0), max(self.x1, other.x1))


def check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a mask against the image shape and return it as a boolean array."""
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"The mask has shape {mask.shape} but the image has shape {shape}.")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number):
            raise ValueError(f"The mask must be boolean or numeric, got {mask.dtype}.")
        mask = mask != 0
    return mask


def mask_windows(mask: np.ndarray, context: int, *, square: bool = False) -> list[Window]:
    """Crop windows around the mask's connected parts, grown by ``context`` px, overlapping ones merged.

    With ``square`` each window is widened (or heightened) to a square where the image allows it, before
    merging, and again after a merge.
    """
    import cv2

    height, width = mask.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    windows = []
    for index in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[index])
        window = Window(
            max(0, y - context), min(height, y + h + context), max(0, x - context), min(width, x + w + context)
        )
        windows.append(_squared(window, height, width) if square else window)
    merged = True
    while merged:
        merged = False
        result: list[Window] = []
        for window in windows:
            for index, kept in enumerate(result):
                if kept.overlaps(window):
                    union = kept.union(window)
                    result[index] = _squared(union, height, width) if square else union
                    merged = True
                    break
            else:
                result.append(window)
        windows = result
    return sorted(windows, key=lambda w: (w.y0, w.x0))


def _squared(window: Window, height: int, width: int) -> Window:
    """Grow the shorter side of ``window`` to match the longer one, centred, shifted to stay in the image."""
    side = max(window.height, window.width)

    def span(start: int, stop: int, limit: int) -> tuple[int, int]:
        size = min(side, limit)
        begin = start - (size - (stop - start)) // 2
        begin = min(max(0, begin), limit - size)
        return begin, begin + size

    y0, y1 = span(window.y0, window.y1, height)
    x0, x1 = span(window.x0, window.x1, width)
    return Window(y0, y1, x0, x1)


def paste(pixels: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``pixels`` with the masked pixels taken from ``filled``: exact outside the mask by construction."""
    return np.where(mask, filled.astype(pixels.dtype, copy=False), pixels)


def noise_level(pixels: np.ndarray, mask: np.ndarray) -> float:
    """The standard deviation of white noise that explains the unmasked pixels' horizontal neighbour differences.

    The difference of two neighbours with independent noise of deviation s has deviation s * sqrt(2); the
    median absolute difference (times 1.4826) estimates that robustly, ignoring edges. Zero when no two
    horizontally adjacent pixels are both unmasked.
    """
    known = ~mask[:, 1:] & ~mask[:, :-1]
    differences = (pixels[:, 1:] - pixels[:, :-1])[known]
    if differences.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(differences)) / np.sqrt(2.0))


@dataclass
class ClassicalInpainter(RecordedSettings):
    """OpenCV Telea / Navier-Stokes or scikit-image biharmonic inpainting, window by window.

    ``radius`` is OpenCV's ``inpaintRadius`` (pixels of known neighbourhood each filled pixel draws on);
    ``context`` is the margin of known pixels around each masked part that its window includes. These methods
    fill smoothly, and a noise-free patch in a noisy radiograph is itself a giveaway, so with ``grain`` the
    fill gets Gaussian noise of the window's own noise level (estimated from the known pixels' neighbour
    differences), drawn from ``seed``.
    """

    method: str = "telea"
    radius: int = 5
    context: int = 16
    grain: bool = True
    seed: int = 0
    name: str = "classical"

    def __post_init__(self) -> None:
        if self.method not in ("telea", "ns", "biharmonic"):
            raise ValueError(f"Unknown classical inpainting method {self.method!r}; use telea, ns or biharmonic.")

    def inpaint(self, pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        pixels = check_pixels(pixels)
        mask = check_mask(mask, pixels.shape)
        filled = pixels.copy()
        rng = np.random.default_rng(self.seed)
        for window in mask_windows(mask, self.context):
            crop, crop_mask = pixels[window.slices], mask[window.slices]
            if self.method == "biharmonic":
                from skimage.restoration import inpaint_biharmonic

                result = inpaint_biharmonic(crop.astype(np.float64), crop_mask).astype(np.float32)
            else:
                flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
                # OpenCV's float path assumes 8-bit-like magnitudes (Telea on [0, 1] data overflows), so the crop
                # is scaled to [0, 255] in float32, which keeps the sub-level precision of 16-bit sources.
                result = cv2.inpaint(crop * 255.0, crop_mask.astype(np.uint8), self.radius, flag) / 255.0
            if self.grain:
                result = result + rng.normal(0.0, noise_level(crop, crop_mask), crop.shape).astype(np.float32)
            filled[window.slices] = np.where(crop_mask, np.clip(result, 0.0, 1.0), crop)
        return paste(pixels, filled, mask)


@dataclass
class StableDiffusionInpainter(RecordedSettings):
    """Stable Diffusion 2 inpainting on square crops around the masked regions (see the module docstring).

    ``size`` is the model's working resolution (512 for stable-diffusion-2-inpainting); ``context`` the
    margin of known pixels around each masked part, at least ``min_context_fraction`` of the part's size so
    the model sees enough background. Each window's generator is seeded with ``seed`` + its index.
    """

    model_path: str
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str | None = "text, letters, numbers, markers, watermark"
    steps: int = 50
    guidance_scale: float = 7.5
    seed: int = 0
    size: int = 512
    context: int = 32
    min_context_fraction: float = 0.5
    device: str = "auto"
    dtype: str = "auto"
    name: str = "stable-diffusion-inpainting"

    def pipeline(self) -> Any:
        """The cached diffusers pipeline for this model folder, device and dtype."""
        from cleanup.model_cache import cached_model
        from generation.devices import select_device

        choice = select_device(self.device, self.dtype)
        folder = Path(self.model_path).resolve()
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(f"No diffusers model folder (model_index.json) at {folder}.")

        def load() -> Any:
            from diffusers import StableDiffusionInpaintPipeline

            pipeline = StableDiffusionInpaintPipeline.from_pretrained(
                folder,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                local_files_only=True,
                dtype=choice.torch_dtype(),
            )
            pipeline.set_progress_bar_config(disable=True)
            return pipeline.to(choice.torch_device())

        return cached_model(("sd-inpaint", str(folder), choice.device, choice.dtype), load)

    def inpaint(self, pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        pixels = check_pixels(pixels)
        mask = check_mask(mask, pixels.shape)
        if not mask.any():
            return pixels.copy()
        pipeline = self.pipeline()
        filled = pixels.copy()
        for index, window in enumerate(self._windows(mask)):
            crop, crop_mask = pixels[window.slices], mask[window.slices]
            grey = Image.fromarray(np.rint(crop * 255).astype(np.uint8))
            holes = Image.fromarray(crop_mask.astype(np.uint8) * 255)
            if grey.size != (self.size, self.size):
                grey = grey.resize((self.size, self.size), Image.BICUBIC)
                holes = holes.resize((self.size, self.size), Image.NEAREST)
            with torch.inference_mode():
                result = pipeline(
                    prompt=self.prompt,
                    negative_prompt=self.negative_prompt,
                    image=grey.convert("RGB"),
                    mask_image=holes,
                    height=self.size,
                    width=self.size,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=torch.Generator("cpu").manual_seed(self.seed + index),
                    output_type="np",
                ).images[0]
            generated = np.asarray(result, dtype=np.float32).mean(axis=2)
            if generated.shape != crop.shape:
                generated = np.asarray(
                    Image.fromarray(generated).resize((window.width, window.height), Image.BICUBIC), dtype=np.float32
                )
            filled[window.slices] = np.where(crop_mask, np.clip(generated, 0.0, 1.0), crop)
        return paste(pixels, filled, mask)

    def _windows(self, mask: np.ndarray) -> list[Window]:
        import cv2

        # The context grows with the largest masked part so a big label still gets background around it.
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        largest = int(stats[1:, 2:4].max()) if len(stats) > 1 else 0
        context = max(self.context, int(np.ceil(self.min_context_fraction * largest)))
        return mask_windows(mask, context, square=True)
