"""Turn detected boxes into a pixel mask of what to remove: Segment Anything prompted by each box, or glyph pixels.

Segmenters return a boolean mask of the image's shape: the union over boxes, not yet dilated (the pipeline
dilates with :func:`dilate_mask`, 5x5 kernel, 2 iterations by default, as the reference pipeline does).

``SamSegmenter`` loads an original Segment Anything checkpoint (``sam_vit_h_4b8939.pth`` and friends) from a
local path through ``segment_anything``'s ``SamPredictor``. The architecture comes from ``model_type``
("vit_h", "vit_l", "vit_b", or "tiny", the test architecture) or, with "auto", from the checkpoint's tensor
shapes; either way the model is built by ``segment_anything``'s own modules and loaded with a strict
``load_state_dict``, so a tiny test checkpoint and a real one take the same path.

``GlyphSegmenter`` needs no model: inside each box it keeps the pixels that stand out from the box's
surroundings (a local threshold at a third of the way from the surrounding level to the extreme), with
what they enclose, and the whole box when its interior is a flat frame (a grey label box, a bar, the black
disc of a circled letter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.ndimage import binary_fill_holes

from cleanup.component import RecordedSettings
from cleanup.detect import TextBox
from cleanup.strokes import check_pixels


@runtime_checkable
class Segmenter(Protocol):
    name: str

    def segment(self, pixels: np.ndarray, boxes: Sequence[TextBox]) -> np.ndarray:
        """A boolean mask (the image's shape) of the artifact pixels in ``boxes``."""
        ...

    def settings(self) -> dict[str, Any]: ...


def dilate_mask(mask: np.ndarray, kernel: int = 5, iterations: int = 2) -> np.ndarray:
    """Grow a boolean mask with a ``kernel`` x ``kernel`` square, ``iterations`` times (OpenCV ``dilate``)."""
    import cv2

    if kernel < 1 or iterations < 0:
        raise ValueError(f"Dilation needs kernel >= 1 and iterations >= 0, got {kernel} and {iterations}.")
    if iterations == 0 or kernel == 1 or not mask.any():
        return mask.astype(bool, copy=True)
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((kernel, kernel), np.uint8), iterations=iterations)
    return grown.astype(bool)


def _ring(pixels: np.ndarray, box: TextBox, width: int) -> np.ndarray:
    """The pixels in a band ``width`` wide around ``box`` (inside the image)."""
    height, image_width = pixels.shape
    x0, y0, x1, y1 = box.corners
    ox0, oy0 = max(0, x0 - width), max(0, y0 - width)
    ox1, oy1 = min(image_width, x1 + width), min(height, y1 + width)
    band = np.ones((oy1 - oy0, ox1 - ox0), bool)
    band[y0 - oy0 : y1 - oy0, x0 - ox0 : x1 - ox0] = False
    return pixels[oy0:oy1, ox0:ox1][band]


@dataclass
class GlyphSegmenter(RecordedSettings):
    """Glyph pixels by a local threshold against each box's surroundings (see the module docstring).

    ``threshold`` is the fraction of the way from the surrounding level to the box's extreme (1st or 99th
    percentile) a pixel must go to count, in the stronger polarity and, when its contrast is at least
    ``second_polarity`` of the stronger one, in the other too. ``flat_tolerance`` (intensity units) and
    ``flat_share`` decide that a box's non-glyph interior is a flat frame, which is then masked whole.
    """

    threshold: float = 1 / 3
    ring_width: int = 3
    min_contrast: float = 0.04
    flat_tolerance: float = 3 / 255
    flat_share: float = 0.6
    second_polarity: float = 0.5
    name: str = "glyph-threshold"

    def segment(self, pixels: np.ndarray, boxes: Sequence[TextBox]) -> np.ndarray:
        pixels = check_pixels(pixels)
        mask = np.zeros(pixels.shape, bool)
        for box in boxes:
            x0, y0, x1, y1 = box.corners
            mask[y0:y1, x0:x1] |= self.box_mask(pixels, box)
        return mask

    def box_mask(self, pixels: np.ndarray, box: TextBox) -> np.ndarray:
        """The glyph mask of one box, in the box's own coordinates."""
        x0, y0, x1, y1 = box.corners
        inside = pixels[y0:y1, x0:x1]
        surround = _ring(pixels, box, self.ring_width)
        if surround.size == 0:  # the box is the whole image
            return np.ones(inside.shape, bool)
        background = float(np.median(surround))
        brighter = float(np.percentile(inside, 99)) - background
        darker = background - float(np.percentile(inside, 1))
        strongest = max(brighter, darker)
        if strongest < self.min_contrast:
            # Nothing in the box stands out from its surroundings: remove the whole box.
            return np.ones(inside.shape, bool)
        # A circled letter is a bright ring and letter on a dark disc: both polarities count when both are strong.
        glyphs = np.zeros(inside.shape, bool)
        if brighter >= self.second_polarity * strongest:
            glyphs |= inside - background > self.threshold * brighter
        if darker >= self.second_polarity * strongest:
            glyphs |= background - inside > self.threshold * darker
        # What a glyph encloses goes with it: the disc inside a ring, the counter of an "O".
        glyphs = binary_fill_holes(glyphs)
        rest = inside[~glyphs]
        if rest.size:
            level = float(np.median(rest))
            flat = np.mean(np.abs(rest - level) <= self.flat_tolerance) >= self.flat_share
            differs = np.mean(np.abs(surround - level) <= self.flat_tolerance) < 0.5
            if flat and differs:
                return np.ones(inside.shape, bool)
        return glyphs


# --------------------------------------------------------------------------------------------- SAM


@dataclass(frozen=True)
class SamArchitecture:
    """The hyper-parameters ``segment_anything.build_sam`` hard-codes, as data (defaults: the released models)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    prompt_embed_dim: int = 256
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16


SAM_ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    # For tests: the same modules, narrow and shallow, on 256-pixel inputs. Builds and runs in milliseconds.
    "tiny": SamArchitecture(
        32,
        2,
        2,
        (1,),
        prompt_embed_dim=32,
        image_size=256,
        window_size=4,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
        mask_in_chans=4,
    ),
}


def build_sam(architecture: SamArchitecture) -> Any:
    """A randomly initialised ``segment_anything.modeling.Sam`` of ``architecture``, in eval mode."""
    from functools import partial

    import torch

    from cleanup.torchvision_compat import import_segment_anything

    import_segment_anything()
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    a = architecture
    embedding_size = a.image_size // a.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a.encoder_depth,
            embed_dim=a.encoder_embed_dim,
            img_size=a.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a.encoder_num_heads,
            patch_size=a.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=a.encoder_global_attn_indexes,
            window_size=a.window_size,
            out_chans=a.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=a.prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(a.image_size, a.image_size),
            mask_in_chans=a.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=a.prompt_embed_dim,
                mlp_dim=a.decoder_mlp_dim,
                num_heads=a.decoder_num_heads,
            ),
            transformer_dim=a.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=a.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def infer_sam_model_type(state_dict: dict[str, Any]) -> str:
    """The registered architecture whose encoder width, depth and input size match a checkpoint's tensors."""
    try:
        embed_dim = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
        grid = int(state_dict["image_encoder.pos_embed"].shape[1])
    except KeyError as error:
        raise ValueError(f"This is not a Segment Anything checkpoint: it has no {error.args[0]!r} tensor.") from None
    depth = 1 + max(int(key.split(".")[2]) for key in state_dict if key.startswith("image_encoder.blocks."))
    for name, architecture in SAM_ARCHITECTURES.items():
        if (
            architecture.encoder_embed_dim == embed_dim
            and architecture.encoder_depth == depth
            and architecture.image_size // architecture.patch_size == grid
        ):
            return name
    raise ValueError(
        f"No registered SAM architecture has an image encoder {embed_dim} wide and {depth} blocks deep "
        f"(registered: {', '.join(SAM_ARCHITECTURES)})."
    )


def load_sam(checkpoint: str | Path, model_type: str = "auto") -> Any:
    """Load an original SAM checkpoint (a state dict saved with ``torch.save``) into its architecture, on CPU."""
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path}")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if model_type == "auto":
        model_type = infer_sam_model_type(state_dict)
    if model_type not in SAM_ARCHITECTURES:
        raise ValueError(f"Unknown SAM model type {model_type!r}; use auto or one of {', '.join(SAM_ARCHITECTURES)}.")
    sam = build_sam(SAM_ARCHITECTURES[model_type])
    try:
        sam.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ValueError(f"{path.name} does not fit the {model_type} architecture: {first_line}") from None
    return sam


def write_tiny_sam_checkpoint(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised "tiny" SAM's state dict at ``path``, like the released ``.pth`` files."""
    import torch

    torch.manual_seed(seed)
    sam = build_sam(SAM_ARCHITECTURES["tiny"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return path


@dataclass
class SamSegmenter(RecordedSettings):
    """Segment Anything with one box prompt per detected box, as the reference pipeline does.

    Each mask is clipped to its box grown by ``box_margin`` (a fraction of the box's size) so that a box never
    removes anatomy far from it; a box whose mask comes back empty falls back to the glyph-threshold mask.
    ``random_weights`` builds ``model_type`` without loading a checkpoint: for throughput benchmarks only.
    """

    checkpoint: str | None = None
    model_type: str = "auto"
    device: str = "auto"
    box_margin: float = 0.25
    random_weights: bool = False
    name: str = "sam"

    def __post_init__(self) -> None:
        if self.checkpoint is None and not self.random_weights:
            raise ValueError("SamSegmenter needs a checkpoint path (or random_weights=True for benchmarks).")
        if self.random_weights and self.model_type not in SAM_ARCHITECTURES:
            raise ValueError(f"random_weights needs an explicit model_type: one of {', '.join(SAM_ARCHITECTURES)}.")

    def predictor(self) -> Any:
        """The cached ``SamPredictor`` for this checkpoint and device."""
        from cleanup.model_cache import cached_model
        from cleanup.torchvision_compat import import_segment_anything
        from generation.devices import select_device

        choice = select_device(self.device, "float32")
        source = "random" if self.random_weights else str(Path(self.checkpoint or "").resolve())
        key = ("sam", source, self.model_type, choice.device)

        def load() -> Any:
            import torch

            segment_anything = import_segment_anything()
            if self.random_weights:
                torch.manual_seed(0)
                sam = build_sam(SAM_ARCHITECTURES[self.model_type])
            else:
                sam = load_sam(self.checkpoint or "", self.model_type)
            return segment_anything.SamPredictor(sam.to(choice.torch_device()))

        return cached_model(key, load)

    def segment(self, pixels: np.ndarray, boxes: Sequence[TextBox]) -> np.ndarray:
        import torch

        pixels = check_pixels(pixels)
        mask = np.zeros(pixels.shape, bool)
        if not boxes:
            return mask
        predictor = self.predictor()
        rgb = np.repeat(np.rint(pixels * 255).astype(np.uint8)[:, :, None], 3, axis=2)
        with torch.inference_mode():
            predictor.set_image(rgb)
            corners = torch.tensor([b.corners for b in boxes], dtype=torch.float32, device=predictor.device)
            prompts = predictor.transform.apply_boxes_torch(corners, pixels.shape)
            masks, _, _ = predictor.predict_torch(
                point_coords=None, point_labels=None, boxes=prompts, multimask_output=False
            )
        masks = masks[:, 0].cpu().numpy()
        predictor.reset_image()
        fallback = GlyphSegmenter()
        height, width = pixels.shape
        for box, box_mask in zip(boxes, masks, strict=True):
            grow_x, grow_y = int(np.ceil(self.box_margin * box.w)), int(np.ceil(self.box_margin * box.h))
            x0, y0 = max(0, box.x - grow_x), max(0, box.y - grow_y)
            x1, y1 = min(width, box.x + box.w + grow_x), min(height, box.y + box.h + grow_y)
            clipped = box_mask[y0:y1, x0:x1]
            if clipped.any():
                mask[y0:y1, x0:x1] |= clipped
            else:
                bx0, by0, bx1, by1 = box.corners
                mask[by0:by1, bx0:bx1] |= fallback.box_mask(pixels, box)
        return mask
