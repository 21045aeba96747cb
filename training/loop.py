"""LoRA fine-tuning of Stable Diffusion 2.1-base on chest X-rays: the settings, the objective and `train_lora`.

`train_lora` adapts the UNet's attention projections (optionally the text encoder's too) with a peft LoRA while
the VAE, the text encoder and every base weight stay frozen. Images are encoded by the VAE once per run and
resolution and kept in `output_dir/cache/` (so are the prompts' text embeddings while the text encoder is
frozen). The objective follows the model's own scheduler (`prediction_type`: epsilon for SD 2.1-base,
v_prediction for SD 2.1 768), optionally with min-SNR weighting, and each example's loss is multiplied by its
weight. Checkpoints are written every `checkpoint_every` optimizer steps, and a call on an `output_dir` that
holds one goes on from the latest: this is how the job of a killed worker resumes. On a CPU a run is
deterministic: N steps in one call equal k steps, a checkpoint and N - k more steps in a second call.

torch, diffusers and peft are imported inside the functions (importing this module needs none of them), and
nothing here knows about Django: the training job and the `train_lora` command wrap it.

One job, and so one module despite its length: from examples and settings to a trained adapter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from generation.devices import DeviceChoice, select_device
from generation.hashing import file_sha256, model_dir_sha256, model_files
from generation.pipeline import LUMA_WEIGHTS, GenerationSettings, check_model_dir, library_versions
from training import lora_io

LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION_MODES = ("auto", "bf16", "fp16", "no")
PREDICTION_TYPES = ("epsilon", "v_prediction")
# CLIP's attention projections, the text-encoder counterpart of the UNet's to_q/to_k/to_v/to_out.0.
TEXT_ENCODER_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
# AdamW as in diffusers' train_text_to_image_lora.py.
ADAM_BETAS = (0.9, 0.999)
ADAM_WEIGHT_DECAY = 1e-2
ADAM_EPSILON = 1e-8
MAX_SEED = 2**63 - 1
MAX_RESOLUTION = 2048
# Settings that change how a run is watched or how fast it goes, not what it learns: a run may resume with
# other values for these. Any other difference is refused (see `ResumeError`).
RESUMABLE_CHANGES = frozenset(
    {
        "checkpoint_every",
        "keep_checkpoints",
        "validation_every",
        "validation_prompts",
        "validation_seeds",
        "validation_steps",
        "torch_compile",
    }
)
MAX_LISTED_PROBLEMS = 20
LORA_ADAPTER_NAME = "default"  # peft's name for a model's only adapter
CACHE_FOLDER = "cache"
ADAPTER_FOLDER = "adapter"


class TrainingError(ValueError):
    """Training input that cannot be used (settings, examples, base model); `problems` lists each as a
    sentence saying what to change."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


class ResumeError(TrainingError):
    """`output_dir` holds a checkpoint of another run (other settings, base model or examples)."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainingSettings:
    """How a LoRA is trained. The defaults are the reference run: rank 4 on the UNet attention projections,
    AdamW at 1e-4 constant, batch 5 at 512x512, 10 epochs. Each field's `metadata["help"]` says what it does,
    in a sentence a form can show."""

    rank: int = _setting(4, "LoRA rank r: the width of the low-rank update of each adapted layer.")
    alpha: float = _setting(4.0, "LoRA alpha: the update is scaled by alpha / rank (1 at the reference setting).")
    target_modules: tuple[str, ...] = _setting(
        ("to_q", "to_k", "to_v", "to_out.0"), "UNet layers that get a LoRA, by module-name suffix."
    )
    text_encoder_lora: bool = _setting(
        False, "Also adapt the text encoder's attention projections (its text embeddings are then not cached)."
    )
    learning_rate: float = _setting(1e-4, "AdamW learning rate after warm-up.")
    lr_schedule: str = _setting("constant", "Learning-rate schedule after warm-up: constant or cosine (to zero).")
    warmup_steps: int = _setting(0, "Optimizer steps over which the learning rate rises linearly from zero.")
    batch_size: int = _setting(5, "Images per forward pass (micro-batch).")
    gradient_accumulation: int = _setting(
        1, "Micro-batches whose gradients are summed into one optimizer step (effective batch = product)."
    )
    resolution: int = _setting(
        512, "Training image side in pixels, a multiple of 8; images of another size are resized (Lanczos)."
    )
    epochs: int = _setting(10, "Passes over the examples; ignored when max_steps is set.")
    max_steps: int | None = _setting(
        None, "Optimizer steps to train for; when set it wins over epochs (the data then repeats as needed)."
    )
    max_grad_norm: float = _setting(1.0, "Gradients are clipped to this global L2 norm before each step.")
    mixed_precision: str = _setting(
        "auto",
        "auto (bf16 where the device supports it, fp16 on older GPUs, float32 on a CPU), bf16, fp16 or no. "
        "LoRA weights stay float32 in every mode.",
    )
    gradient_checkpointing: bool = _setting(
        False, "Recompute UNet activations in the backward pass: less memory, about a third slower."
    )
    min_snr_gamma: float | None = _setting(
        None, "Min-SNR loss weighting (Hang et al. 2023) with this gamma; 5.0 is the paper's value, empty is off."
    )
    seed: int = _setting(0, "Seed of the LoRA initialisation, the noise, the timesteps and the data order.")
    checkpoint_every: int = _setting(500, "Write a resumable checkpoint every this many optimizer steps (0: never).")
    keep_checkpoints: int = _setting(3, "Checkpoints kept; older ones are deleted.")
    validation_every: int = _setting(
        0, "Generate validation images every this many steps (0: only at the end, when prompts are given)."
    )
    validation_prompts: tuple[str, ...] = _setting((), "Prompts of the validation images.")
    validation_seeds: tuple[int, ...] = _setting((0,), "Seeds of the validation images, each used with every prompt.")
    validation_steps: int = _setting(20, "Denoising steps of a validation image.")
    torch_compile: bool = _setting(False, "Compile the UNet with torch.compile (GPU; the first steps take minutes).")

    def problems(self) -> list[str]:
        """Every problem with these settings, as sentences for a form; empty when they are valid."""
        found: list[str] = []

        def whole(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                limit = f"from {low} to {high}" if high else f"at least {low}"
                found.append(f"{name} must be a whole number {limit} (got {value!r}).")

        def positive(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                found.append(f"{name} must be a positive number (got {value!r}).")

        whole("rank", 1, 1024)
        positive("alpha")
        if (
            not isinstance(self.target_modules, tuple)
            or not self.target_modules
            or not all(isinstance(name, str) and name for name in self.target_modules)
        ):
            found.append(f"target_modules must name at least one layer (got {self.target_modules!r}).")
        positive("learning_rate")
        if self.lr_schedule not in LR_SCHEDULES:
            found.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r}).")
        whole("warmup_steps", 0)
        whole("batch_size", 1)
        whole("gradient_accumulation", 1)
        whole("resolution", 8, MAX_RESOLUTION)
        if isinstance(self.resolution, int) and self.resolution % 8:
            below = self.resolution - self.resolution % 8
            found.append(
                f"resolution must be a multiple of 8, the VAE's downsampling factor (got {self.resolution}; "
                f"nearest are {below} and {below + 8})."
            )
        whole("epochs", 1)
        if self.max_steps is not None:
            whole("max_steps", 1)
        positive("max_grad_norm")
        if self.mixed_precision not in MIXED_PRECISION_MODES:
            modes = ", ".join(MIXED_PRECISION_MODES)
            found.append(f"mixed_precision must be one of {modes} (got {self.mixed_precision!r}).")
        if self.min_snr_gamma is not None:
            positive("min_snr_gamma")
        whole("seed", 0, MAX_SEED)
        whole("checkpoint_every", 0)
        whole("keep_checkpoints", 1)
        whole("validation_every", 0)
        if not isinstance(self.validation_prompts, tuple) or not all(
            isinstance(prompt, str) and prompt.strip() for prompt in self.validation_prompts
        ):
            found.append(f"validation_prompts must be non-empty texts (got {self.validation_prompts!r}).")
        elif self.validation_every and not self.validation_prompts:
            found.append("validation_every is set but no validation_prompts are given.")
        if (
            not isinstance(self.validation_seeds, tuple)
            or not self.validation_seeds
            or not all(
                isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED
                for seed in self.validation_seeds
            )
        ):
            found.append(f"validation_seeds must be at least one whole number >= 0 (got {self.validation_seeds!r}).")
        whole("validation_steps", 1, 500)
        for name in ("text_encoder_lora", "gradient_checkpointing", "torch_compile"):
            if not isinstance(getattr(self, name), bool):
                found.append(f"{name} must be true or false (got {getattr(self, name)!r}).")
        return found

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise TrainingError(problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples as lists); `from_dict` reads them back."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSettings:
        """Settings from `to_dict` output (or a JSON object); TrainingError for unknown keys or bad values.
        Missing keys take their defaults."""
        if not isinstance(data, Mapping):
            raise TrainingError([f"Training settings must be a JSON object (got {type(data).__name__})."])
        known = {item.name: item for item in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise TrainingError(
                [f"Unknown training settings: {', '.join(map(repr, unknown))}; known are {', '.join(known)}."]
            )
        values = {}
        for name, value in data.items():
            default = known[name].default
            values[name] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        settings = cls(**values)
        settings.validate()
        return settings


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def settings_help() -> dict[str, str]:
    """Field name -> the help sentence of `TrainingSettings`, for forms and the command's --help."""
    return {item.name: item.metadata["help"] for item in fields(TrainingSettings) if item.default is not MISSING}


@dataclass(frozen=True)
class TrainingExample:
    """One training image: `key` identifies its pixels (e.g. the image file's sha256; the latent cache is keyed
    by it), `pixels` is a square 2-D float32 array in [0, 1] (padding to square is the dataset code's job; it is
    never cropped or flipped here), `prompt` its caption, and `weight` multiplies its loss (0: no gradient)."""

    key: str
    pixels: np.ndarray
    prompt: str
    weight: float = 1.0


@dataclass(frozen=True)
class StepReport:
    """Progress after one optimizer step: `step` of `total_steps` (1-based), the 0-based `epoch` its examples came
    from, the weighted loss, the learning rate the step used, the gradient norm before clipping, and the
    examples per second of this step."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float
    images_per_second: float


@dataclass(frozen=True)
class TrainingResult:
    """What `train_lora` produced: the adapter folder (`output_dir/adapter`, or the checkpoint written when the
    run was stopped early), the optimizer steps done in all, the last step's loss, the training metadata, and
    the step the run resumed from (None for a fresh start)."""

    adapter_dir: Path
    steps: int
    final_loss: float
    metadata: dict
    resumed_from: int | None

    @property
    def completed(self) -> bool:
        return bool(self.metadata.get("completed"))


# --- checking input before any weights are read ---------------------------------------------------------------------


def example_problems(examples: Sequence[TrainingExample]) -> list[str]:
    """Problems with the training examples, as sentences; empty when they can be trained on."""
    if not examples:
        return ["No training examples were given: a LoRA needs at least one image."]
    found: list[str] = []
    for number, example in enumerate(examples, start=1):
        label = f"Example {number} ({example.key!r})" if isinstance(example.key, str) else f"Example {number}"
        if not isinstance(example.key, str) or not example.key:
            found.append(f"{label}: the key must be a non-empty text (e.g. the image's sha256).")
        found += [f"{label}: {problem}" for problem in pixel_problems(example.pixels)]
        if not isinstance(example.prompt, str):
            found.append(f"{label}: the prompt must be text (got {type(example.prompt).__name__}).")
        weight = example.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            found.append(f"{label}: the loss weight must be a number >= 0 (got {weight!r}).")
    if not found and not any(example.weight > 0 for example in examples):
        found.append("Every example has loss weight 0, so training would learn nothing: give some a positive weight.")
    if len(found) > MAX_LISTED_PROBLEMS:
        found = [*found[:MAX_LISTED_PROBLEMS], f"... and {len(found) - MAX_LISTED_PROBLEMS} more problems."]
    return found


def pixel_problems(pixels: Any) -> list[str]:
    """What keeps `pixels` from being a training image: it must be a square 2-D float array in [0, 1]."""
    if not isinstance(pixels, np.ndarray):
        return [f"pixels must be a NumPy array (got {type(pixels).__name__})."]
    if pixels.ndim != 2:
        return [f"pixels must be a 2-D grey image (got shape {pixels.shape})."]
    if pixels.shape[0] != pixels.shape[1] or pixels.shape[0] == 0:
        return [f"pixels must be square, padded by the dataset code (got {pixels.shape[1]}x{pixels.shape[0]})."]
    if not np.issubdtype(pixels.dtype, np.floating):
        return [f"pixels must be floats in [0, 1] (got {pixels.dtype}; divide 8-bit values by 255)."]
    if not np.isfinite(pixels).all():
        return ["pixels hold NaN or infinite values."]
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 1:
        return [f"pixels must lie in [0, 1] (got {low:g} to {high:g})."]
    return []


def input_problems(base_model_dir: Path, examples: Sequence[TrainingExample], settings: TrainingSettings) -> list[str]:
    """Everything wrong with a training request, found without loading weights."""
    problems = settings.problems() + example_problems(examples)
    problems += [f"Base model: {problem}" for problem in check_model_dir(Path(base_model_dir))]
    return problems


# --- data ------------------------------------------------------------------------------------------------------------


def prepare_pixels(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """The VAE input for one example: (3, resolution, resolution) float32 in [-1, 1].

    A square grey image is resized to `resolution` with Pillow's Lanczos filter (the serving policy's filter,
    `imaging.normalise.RESAMPLING_FILTER`) only when its side differs, clipped to [0, 1] (Lanczos overshoots at
    edges), repeated into SD's three channels and mapped to [-1, 1]. It is never cropped and never flipped: on a
    chest X-ray left and right are anatomy (heart, aortic arch, the laterality marker), so the usual
    horizontal-flip augmentation would teach the model a mirrored chest."""
    from PIL import Image

    from imaging.normalise import RESAMPLING_FILTER

    problems = pixel_problems(pixels)
    if problems:
        raise TrainingError(problems)
    grey = np.asarray(pixels, dtype=np.float32)
    if grey.shape[0] != resolution:
        resized = Image.fromarray(grey).resize((resolution, resolution), resample=RESAMPLING_FILTER)
        grey = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    scaled = grey * 2.0 - 1.0
    return np.ascontiguousarray(np.broadcast_to(scaled, (3, resolution, resolution)), dtype=np.float32)


def dataset_sha256(examples: Sequence[TrainingExample]) -> str:
    """sha256 over the sorted (key, prompt, weight) of every example: what the run was trained on."""
    lines = sorted(
        json.dumps([example.key, example.prompt, float(example.weight)], ensure_ascii=False) for example in examples
    )
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def component_sha256(model_dir: Path, components: Sequence[str]) -> str:
    """sha256 over the files diffusers reads for the named components of a model folder (e.g. vae/)."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in model_files(model_dir):
        relative = path.relative_to(model_dir)
        if relative.parts[0] in components and path.is_file():
            digest.update(f"{relative.as_posix()}\t{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The order the examples are visited in `epoch`: a permutation drawn from (seed, epoch) alone, so that a
    resumed run needs nothing but the epoch and the position in it to go on with the same data."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def steps_per_epoch(count: int, settings: TrainingSettings) -> int:
    micro_batches = math.ceil(count / settings.batch_size)
    return math.ceil(micro_batches / settings.gradient_accumulation)


def total_steps(count: int, settings: TrainingSettings) -> int:
    """Optimizer steps of a run: `max_steps` when set, else `epochs` passes (the last batch of a pass may be
    smaller; no example is dropped)."""
    return settings.max_steps if settings.max_steps is not None else settings.epochs * steps_per_epoch(count, settings)


def step_batches(count: int, settings: TrainingSettings, epoch: int, index: int) -> tuple[list[np.ndarray], int, int]:
    """The micro-batches (example indices) of the optimizer step starting at position `index` of `epoch`, and
    the position after it (the next epoch's start once this one is used up)."""
    order = epoch_order(count, settings.seed, epoch)
    span = order[index : index + settings.batch_size * settings.gradient_accumulation]
    batches = [span[start : start + settings.batch_size] for start in range(0, len(span), settings.batch_size)]
    following = index + len(span)
    return (batches, epoch + 1, 0) if following >= count else (batches, epoch, following)


# --- the objective ---------------------------------------------------------------------------------------------------


def load_noise_scheduler(base_model_dir: Path) -> Any:
    """The DDPM training scheduler configured from the model folder's scheduler/ (betas, timesteps and the
    prediction type the model was trained with: read, never assumed)."""
    from diffusers import DDPMScheduler

    config = DDPMScheduler.load_config(Path(base_model_dir) / "scheduler")
    scheduler = DDPMScheduler.from_config(config)
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise TrainingError(
            [f"The model's scheduler predicts {prediction_type!r}; training supports {' and '.join(PREDICTION_TYPES)}."]
        )
    return scheduler


def training_target(prediction_type: str, scheduler: Any, latents: Any, noise: Any, timesteps: Any) -> Any:
    """What the UNet must predict for noisy latents x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε: the noise ε for
    "epsilon", the velocity v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 for "v_prediction" (Salimans & Ho 2022,
    "Progressive Distillation for Fast Sampling of Diffusion Models", arXiv:2202.00512; diffusers'
    `get_velocity`)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise TrainingError(
        [f"Unknown prediction type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}."]
    )


def min_snr_weights(alphas_cumprod: Any, timesteps: Any, gamma: float, prediction_type: str) -> Any:
    """Per-sample loss weights of Min-SNR-γ (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy", arXiv:2303.09556): the x_0-loss weight min(SNR_t, γ), with SNR_t = ᾱ_t / (1 - ᾱ_t),
    rewritten for the network's target. Since ||ε - ε̂||² = SNR_t ||x_0 - x̂_0||² and
    ||v - v̂||² = (SNR_t + 1) ||x_0 - x̂_0||², the weight is min(SNR_t, γ) / SNR_t for epsilon prediction and
    min(SNR_t, γ) / (SNR_t + 1) for v-prediction (as in diffusers' training examples). A timestep with SNR 0
    (zero terminal SNR) gets the limit 1 under epsilon prediction."""
    import torch

    alpha_bar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alpha_bar / (1.0 - alpha_bar)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if prediction_type == "epsilon":
        return torch.where(snr > 0, clipped / snr.clamp_min(torch.finfo(snr.dtype).tiny), torch.ones_like(snr))
    if prediction_type == "v_prediction":
        return clipped / (snr + 1.0)
    raise TrainingError(
        [f"Unknown prediction type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}."]
    )


def resolve_mixed_precision(requested: str, device: DeviceChoice) -> str:
    """ "bf16", "fp16" or "no" for a `mixed_precision` setting on a device; "auto" follows
    `generation.devices.default_dtype` (bf16 on XPU and CUDA >= Ampere, fp16 on older GPUs, no on a CPU)."""
    if requested != "auto":
        return requested
    return {"bfloat16": "bf16", "float16": "fp16"}.get(device.dtype, "no")


# --- the model side of a run -----------------------------------------------------------------------------------------


class LoraTrainer:
    """The loaded models of one run with their LoRA, optimizer, learning-rate schedule, gradient scaler and
    noise generator; `train_lora` drives it one optimizer step at a time, and tests use it directly.

    Base weights (UNet, text encoder) are held in the compute dtype and frozen; the LoRA factors are float32
    whatever the mode, so fp16 training unscales float32 gradients (fp16 LoRA weights are what makes
    GradScaler fail with "Attempting to unscale FP16 gradients") and bf16 updates are not lost to rounding.
    The VAE stays float32: it encodes each image once and decodes only validation images."""

    def __init__(
        self,
        base_model_dir: Path,
        settings: TrainingSettings,
        device: DeviceChoice,
        *,
        total_steps: int,
    ) -> None:
        import torch
        from diffusers import AutoencoderKL, StableDiffusionPipeline
        from diffusers.models.attention_processor import AttnProcessor2_0
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig, inject_adapter_in_model

        self.settings = settings
        self.device = device
        self.mixed_precision = resolve_mixed_precision(settings.mixed_precision, device)
        self.weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[self.mixed_precision]
        self.noise_scheduler = load_noise_scheduler(base_model_dir)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        vae = AutoencoderKL.from_pretrained(base_model_dir, subfolder="vae", local_files_only=True)
        pipeline = StableDiffusionPipeline.from_pretrained(
            base_model_dir,
            vae=vae,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            local_files_only=True,
        )
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self.unet, self.text_encoder, self.vae, self.tokenizer = (
            pipeline.unet,
            pipeline.text_encoder,
            pipeline.vae,
            pipeline.tokenizer,
        )
        for model in (self.unet, self.text_encoder, self.vae):
            model.requires_grad_(False)
        if self.weight_dtype != torch.float32:
            # Cast after loading (from_pretrained's dtype keyword changed name across diffusers versions).
            self.unet.to(self.weight_dtype)
            self.text_encoder.to(self.weight_dtype)
        self.unet.set_attn_processor(AttnProcessor2_0())
        self.vae.set_attn_processor(AttnProcessor2_0())

        self.lora_configs: dict[str, dict[str, Any]] = {}
        configs = {
            "unet": LoraConfig(
                r=settings.rank,
                lora_alpha=settings.alpha,
                target_modules=list(settings.target_modules),
                init_lora_weights="gaussian",
            )
        }
        if settings.text_encoder_lora:
            configs["text_encoder"] = LoraConfig(
                r=settings.rank,
                lora_alpha=settings.alpha,
                target_modules=list(TEXT_ENCODER_TARGET_MODULES),
                init_lora_weights="gaussian",
            )
        self.trained_models = [self.unet] + ([self.text_encoder] if settings.text_encoder_lora else [])
        # peft draws the gaussian A factors from torch's global generator: seed it, without disturbing the caller's.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            for name, config in configs.items():
                try:
                    if name == "unet":
                        self.unet.add_adapter(config)
                    else:
                        # peft itself rather than transformers' add_adapter, which asks for a newer peft than
                        # diffusers does (transformers 5 wants peft >= 0.22).
                        inject_adapter_in_model(config, self.text_encoder, adapter_name=LORA_ADAPTER_NAME)
                except ValueError as error:  # peft: "Target modules ... not found in the base model"
                    raise TrainingError([f"The {name} has no layer to adapt: {error}"]) from error
                self.lora_configs[name] = config.to_dict()
        cast_training_params(self.trained_models, dtype=torch.float32)
        if settings.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if settings.text_encoder_lora:
                self.text_encoder.gradient_checkpointing_enable()

        pipeline.to(device.device)
        self.channels_last = device.kind != "cpu"
        if self.channels_last:
            # GPU tensor cores run convolutions in NHWC (as generation does; on a CPU it gains nothing).
            self.unet.to(memory_format=torch.channels_last)
        if device.kind == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.unet.train()
        self.text_encoder.train(settings.text_encoder_lora)
        self.vae.eval()
        if settings.torch_compile:
            self.unet.compile()

        # A list, not a generator: the optimizer and clip_grad_norm_ must both see every parameter.
        self.trainable_parameters = [
            parameter for model in self.trained_models for parameter in model.parameters() if parameter.requires_grad
        ]
        self.optimizer = torch.optim.AdamW(
            self.trainable_parameters,
            lr=settings.learning_rate,
            betas=ADAM_BETAS,
            weight_decay=ADAM_WEIGHT_DECAY,
            eps=ADAM_EPSILON,
            fused=True if device.kind == "cuda" else None,
        )
        schedule = settings.lr_schedule
        if schedule == "constant" and settings.warmup_steps:
            schedule = "constant_with_warmup"  # diffusers' "constant" ignores warm-up steps
        self.lr_scheduler = get_scheduler(
            schedule, self.optimizer, num_warmup_steps=settings.warmup_steps, num_training_steps=total_steps
        )
        self.scaler = torch.amp.GradScaler(device.kind, enabled=self.mixed_precision == "fp16")
        # Noise and timesteps come from one seeded CPU generator: the same on every device, and resumable.
        self.generator = torch.Generator("cpu").manual_seed(settings.seed)
        self.alphas_cumprod = self.noise_scheduler.alphas_cumprod.to(device.device, torch.float32)

    # --- encoding ---

    def autocast(self) -> Any:
        import torch

        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.kind, dtype=self.weight_dtype)

    def encode_images(self, pixels: np.ndarray) -> Any:
        """Scaled VAE latents (CPU float32) of a batch of `prepare_pixels` outputs: the posterior mean times
        `vae.config.scaling_factor`. The mean, not a sample: SD's posterior standard deviation is tiny next to the
        latents' range, and a cached sample would freeze one draw anyway."""
        import torch

        with torch.no_grad():
            images = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device.device, torch.float32)
            latents = self.vae.encode(images).latent_dist.mean * self.vae.config.scaling_factor
        return latents.float().cpu()

    def tokenize(self, prompts: Sequence[str]) -> Any:
        """Token ids (N x 77 for SD): padded to the tokenizer's maximum length, longer prompts truncated, as the
        generation pipeline does."""
        return self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def encode_prompts(self, input_ids: Any) -> Any:
        """Text-encoder hidden states for token ids, on the device (with gradients when the encoder is trained)."""
        with self.autocast():
            return self.text_encoder(input_ids.to(self.device.device), return_dict=False)[0]

    # --- one step ---

    def loss(
        self,
        latents: Any,
        conditioning: Any,
        weights: Any,
        *,
        noise: Any = None,
        timesteps: Any = None,
    ) -> Any:
        """The weighted denoising loss of one micro-batch (a 0-dim float32 tensor): per sample the mean squared
        error between the UNet's prediction and `training_target`, times the min-SNR weight when enabled and
        the example's weight, then the mean over the batch. `conditioning` is text embeddings (B x 77 x D)
        when the text encoder is frozen, token ids (B x 77) when it is trained. Noise and timesteps are drawn
        from the run's generator unless given."""
        import torch
        import torch.nn.functional as F

        count = latents.shape[0]
        if noise is None:
            noise = torch.randn(latents.shape, generator=self.generator, dtype=torch.float32)
        if timesteps is None:
            steps = self.noise_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, steps, (count,), generator=self.generator)
        device = self.device.device
        latents = latents.to(device, torch.float32)
        noise = noise.to(device, torch.float32)
        timesteps = timesteps.to(device)
        weights = torch.as_tensor(weights, dtype=torch.float32).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        target = training_target(self.prediction_type, self.noise_scheduler, latents, noise, timesteps)
        if self.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        if self.settings.text_encoder_lora:
            hidden_states = self.encode_prompts(conditioning)
        else:
            hidden_states = conditioning.to(device)
        with self.autocast():
            prediction = self.unet(noisy, timesteps, encoder_hidden_states=hidden_states, return_dict=False)[0]
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none")
        per_sample = per_sample.mean(dim=tuple(range(1, per_sample.ndim)))
        if self.settings.min_snr_gamma is not None:
            snr_weights = min_snr_weights(
                self.alphas_cumprod, timesteps, self.settings.min_snr_gamma, self.prediction_type
            )
            weights = weights * snr_weights
        return (per_sample * weights).mean()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: Any, scale: float = 1.0) -> None:
        self.scaler.scale(loss * scale).backward()

    def optimizer_step(self) -> tuple[float, float]:
        """Unscale, clip to `max_grad_norm`, step the optimizer and the schedule; returns (gradient norm before
        clipping, learning rate used). The clipped gradients stay on the parameters until `zero_grad`."""
        import torch

        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable_parameters, self.settings.max_grad_norm))
        learning_rate = float(self.lr_scheduler.get_last_lr()[0])
        if math.isfinite(grad_norm) or self.scaler.is_enabled():
            # GradScaler skips a non-finite step itself (and lowers its scale).
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.zero_grad()  # a bf16/float32 step with inf/NaN gradients would poison the weights
        self.lr_scheduler.step()
        return grad_norm, learning_rate

    # --- state ---

    def lora_parameters(self, component: str) -> dict[str, Any]:
        """The LoRA factors of "unet" or "text_encoder", keyed as in a saved adapter (peft's key without the
        adapter name: `down_blocks.0...attn1.to_q.lora_A.weight`)."""
        marker = f".{LORA_ADAPTER_NAME}."
        return {
            name.replace(marker, "."): parameter
            for name, parameter in getattr(self, component).named_parameters()
            if (".lora_A." in name or ".lora_B." in name) and marker in name
        }

    def lora_layers(self) -> dict[str, dict[str, Any]]:
        """The LoRA factors per component, as float32 CPU tensors (what `lora_io.write_adapter` takes)."""
        return {
            name: {key: value.detach().float().cpu().contiguous() for key, value in self.lora_parameters(name).items()}
            for name in self.lora_configs
        }

    def load_lora_layers(self, layers: Mapping[str, Mapping[str, Any]]) -> None:
        """Set the LoRA factors from `lora_layers` output (a checkpoint's); ResumeError if the layers differ."""
        import torch

        for name in self.lora_configs:
            parameters = self.lora_parameters(name)
            given = dict(layers.get(name, {}))
            if set(given) != set(parameters):
                raise ResumeError(
                    [
                        f"The checkpoint's {name} LoRA has other layers than this run's ({len(given)} against "
                        f"{len(parameters)} tensors)."
                    ]
                )
            with torch.no_grad():
                for key, parameter in parameters.items():
                    if given[key].shape != parameter.shape:
                        raise ResumeError([f"The checkpoint's {name} LoRA factor {key} has another shape."])
                    parameter.copy_(given[key])

    def training_state(self) -> dict[str, Any]:
        """Optimizer, schedule, scaler and every random state: what, with the LoRA weights, resumes a run."""
        import torch

        numpy_state = np.random.get_state()
        state = {
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_cpu_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "numpy_rng": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        }
        if self.device.kind == "cuda":
            state["torch_cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        import torch

        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_cpu_rng"])
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, *rest = state["numpy_rng"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        cuda_states = state.get("torch_cuda_rng")
        if cuda_states and self.device.kind == "cuda" and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)

    # --- validation ---

    def validation_images(
        self, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, resolution: int
    ) -> list[tuple[str, int, np.ndarray]]:
        """(prompt, seed, grey pixels H x W float32 in [0, 1]) for every prompt and seed, generated with the
        current LoRA by a StableDiffusionPipeline of this run's components and the model's own scheduler, at the
        reference guidance scale. Starting noise is drawn on the CPU from the seed, as `generation` does, so
        the images of one seed are comparable across steps and devices."""
        import torch

        pipeline = self.pipeline
        guidance = GenerationSettings().guidance_scale
        side = resolution // pipeline.vae_scale_factor
        shape = (1, pipeline.unet.config.in_channels, side, side)
        luma = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        images = []
        for model in self.trained_models:
            model.eval()
        try:
            with torch.no_grad(), self.autocast():
                for prompt in prompts:
                    for seed in seeds:
                        generator = torch.Generator("cpu").manual_seed(seed)
                        latents = torch.randn(shape, generator=generator, dtype=torch.float32)
                        output = pipeline(
                            prompt=prompt,
                            height=resolution,
                            width=resolution,
                            num_inference_steps=steps,
                            guidance_scale=guidance,
                            latents=latents.to(self.device.device),
                            generator=generator,
                            output_type="np",
                        )
                        rgb = np.asarray(output.images[0], dtype=np.float32)
                        images.append((prompt, seed, np.clip(rgb @ luma, 0.0, 1.0).astype(np.float32)))
        finally:
            for model in self.trained_models:
                model.train()
        return images


# --- caches ----------------------------------------------------------------------------------------------------------


def _cache_name(*parts: object) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode("utf-8")).hexdigest()


def _save_tensor(path: Path, name: str, tensor: Any, metadata: Mapping[str, str]) -> None:
    from safetensors.torch import save_file

    partial = path.with_name(f"{lora_io.PARTIAL_PREFIX}{path.name}")
    save_file({name: tensor.contiguous()}, str(partial), metadata=dict(metadata))
    partial.replace(path)


def cached_latents(
    trainer: LoraTrainer,
    examples: Sequence[TrainingExample],
    *,
    resolution: int,
    cache_dir: Path,
    vae_sha256: str,
) -> Any:
    """Scaled VAE latents of every example (N x 4 x r/8 x r/8, CPU float32), encoded once and kept in
    `cache_dir/latents/` under sha256(example key, resolution, VAE files' sha256)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(cache_dir) / "latents"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{_cache_name(example.key, resolution, vae_sha256)}.safetensors" for example in examples]
    missing: dict[Path, int] = {}
    for index, path in enumerate(paths):
        if not path.is_file():
            missing.setdefault(path, index)
    pending = list(missing.items())
    for start in range(0, len(pending), trainer.settings.batch_size):
        chunk = pending[start : start + trainer.settings.batch_size]
        pixels = np.stack([prepare_pixels(examples[index].pixels, resolution) for _path, index in chunk])
        for (path, index), latent in zip(chunk, trainer.encode_images(pixels), strict=True):
            metadata = {"key": examples[index].key, "resolution": str(resolution), "vae_sha256": vae_sha256}
            _save_tensor(path, "latent", latent, metadata)
    return torch.stack([load_file(str(path))["latent"] for path in paths])


def cached_text_embeddings(
    trainer: LoraTrainer, prompts: Sequence[str], *, cache_dir: Path, text_sha256: str
) -> dict[str, Any]:
    """Prompt -> frozen text-encoder hidden states (77 x D, CPU float32), encoded once and kept in
    `cache_dir/text/` under sha256(prompt, text encoder and tokenizer files' sha256, compute dtype)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(cache_dir) / "text"
    folder.mkdir(parents=True, exist_ok=True)
    unique = sorted(set(prompts))
    dtype = str(trainer.weight_dtype).removeprefix("torch.")
    paths = {prompt: folder / f"{_cache_name(prompt, text_sha256, dtype)}.safetensors" for prompt in unique}
    pending = [prompt for prompt in unique if not paths[prompt].is_file()]
    for start in range(0, len(pending), trainer.settings.batch_size):
        chunk = pending[start : start + trainer.settings.batch_size]
        with torch.no_grad():
            hidden = trainer.encode_prompts(trainer.tokenize(chunk)).float().cpu()
        for prompt, embedding in zip(chunk, hidden, strict=True):
            _save_tensor(paths[prompt], "embedding", embedding, {"text_sha256": text_sha256, "dtype": dtype})
    return {prompt: load_file(str(path))["embedding"] for prompt, path in paths.items()}


# --- the run ---------------------------------------------------------------------------------------------------------


def _check_resumable(
    record: Mapping[str, Any], checkpoint: Path, settings: TrainingSettings, base_sha256: str, data_sha256: str
) -> None:
    problems = []
    saved = TrainingSettings().to_dict() | dict(record.get("settings", {}))
    current = settings.to_dict()
    changed = [
        name
        for name in current
        if name not in RESUMABLE_CHANGES and json.dumps(saved.get(name)) != json.dumps(current[name])
    ]
    if changed:
        listed = "; ".join(f"{name}: {saved.get(name)!r} then, {current[name]!r} now" for name in changed)
        problems.append(f"The checkpoint {checkpoint} was written with other settings ({listed}).")
    if record.get("base_model_sha256") != base_sha256:
        problems.append(
            f"The checkpoint {checkpoint} was trained on another base model (sha256 "
            f"{str(record.get('base_model_sha256'))[:12]}..., this one is {base_sha256[:12]}...)."
        )
    if record.get("dataset_sha256") != data_sha256:
        problems.append(f"The checkpoint {checkpoint} was trained on other examples (their keys, prompts or weights).")
    if problems:
        problems.append("Resume with the same settings, base model and examples, or train into a new output folder.")
        raise ResumeError(problems)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def train_lora(
    *,
    base_model_dir: Path,
    examples: Sequence[TrainingExample],
    settings: TrainingSettings,
    output_dir: Path,
    device: str = "auto",
    progress: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int, Path], None] | None = None,
    on_validation: Callable[[int, list[tuple[str, int, np.ndarray]]], None] | None = None,
) -> TrainingResult:
    """Train a LoRA on `examples` and write it to `output_dir/adapter/`; see the module docstring.

    If `output_dir` holds a checkpoint, the run goes on from the latest one (a finished run returns at once);
    ResumeError if that checkpoint belongs to other settings, another base model or other examples.
    `progress` gets a StepReport after every optimizer step. `should_stop` is asked between optimizer steps;
    when it says yes a checkpoint is written and the result returned, its `adapter_dir` that checkpoint.
    `on_checkpoint(step, folder)` follows every checkpoint written. `on_validation(step, images)` gets images
    of `validation_prompts` x `validation_seeds` every `validation_every` steps and at the end (none are made
    without it). Raises TrainingError (settings, examples, base model) or DeviceError before loading weights.
    """
    import torch

    started = time.perf_counter()
    base_model_dir = Path(base_model_dir).resolve()
    output_dir = Path(output_dir)
    problems = input_problems(base_model_dir, examples, settings)
    if problems:
        raise TrainingError(problems)
    choice = select_device(device)
    output_dir.mkdir(parents=True, exist_ok=True)
    lora_io.remove_partial_writes(output_dir)
    base_sha256 = model_dir_sha256(base_model_dir)
    data_sha256 = dataset_sha256(examples)
    checkpoint = lora_io.latest_checkpoint(output_dir)
    record: dict[str, Any] | None = None
    if checkpoint is not None:
        record = lora_io.read_checkpoint_record(checkpoint)
        _check_resumable(record, checkpoint, settings, base_sha256, data_sha256)

    count = len(examples)
    total = total_steps(count, settings)
    trainer = LoraTrainer(base_model_dir, settings, choice, total_steps=total)
    cache_dir = output_dir / CACHE_FOLDER
    latents = cached_latents(
        trainer,
        examples,
        resolution=settings.resolution,
        cache_dir=cache_dir,
        vae_sha256=component_sha256(base_model_dir, ("vae",)),
    )
    # One row per distinct prompt (a full-size embedding is 77 x 1024 floats) and, per example, its row.
    prompts = sorted({example.prompt for example in examples})
    if settings.text_encoder_lora:
        prompt_table = trainer.tokenize(prompts)
    else:
        embeddings = cached_text_embeddings(
            trainer,
            prompts,
            cache_dir=cache_dir,
            text_sha256=component_sha256(base_model_dir, ("text_encoder", "tokenizer")),
        )
        prompt_table = torch.stack([embeddings[prompt] for prompt in prompts])
    row_of_prompt = {prompt: row for row, prompt in enumerate(prompts)}
    prompt_rows = torch.tensor([row_of_prompt[example.prompt] for example in examples], dtype=torch.long)
    weights = torch.tensor([float(example.weight) for example in examples], dtype=torch.float32)

    step, epoch, index, loss = 0, 0, 0, math.nan
    resumed_from = None
    if checkpoint is not None and record is not None:
        trainer.load_lora_layers(lora_io.read_adapter_layers(checkpoint))
        trainer.load_training_state(
            torch.load(checkpoint / lora_io.TRAINING_STATE_NAME, map_location="cpu", weights_only=True)
        )
        step, epoch, index = int(record["step"]), int(record["epoch"]), int(record["index_in_epoch"])
        loss = math.nan if record.get("loss") is None else float(record["loss"])
        resumed_from = step
    written_step = resumed_from

    def metadata(completed: bool) -> dict[str, Any]:
        return {
            "base_model": {"path": str(base_model_dir), "sha256": base_sha256},
            "dataset": {
                "sha256": data_sha256,
                "examples": count,
                "prompts": len({example.prompt for example in examples}),
            },
            "settings": settings.to_dict(),
            "steps": step,
            "total_steps": total,
            "completed": completed,
            "final_loss": _finite_or_none(loss),
            "resumed_from": resumed_from,
            "prediction_type": trainer.prediction_type,
            "mixed_precision": trainer.mixed_precision,
            "lora": {
                "rank": settings.rank,
                "alpha": settings.alpha,
                "unet_target_modules": list(settings.target_modules),
                "text_encoder_target_modules": list(TEXT_ENCODER_TARGET_MODULES) if settings.text_encoder_lora else [],
            },
            "versions": library_versions(),
            "device": choice.name,
            "seconds_this_call": round(time.perf_counter() - started, 3),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def write_checkpoint() -> Path:
        nonlocal written_step
        target = output_dir / lora_io.CHECKPOINTS_FOLDER / lora_io.checkpoint_name(step)
        with lora_io.atomic_directory(target) as folder:
            lora_io.write_adapter(
                folder, trainer.lora_layers(), trainer.lora_configs, metadata(completed=step >= total)
            )
            torch.save(trainer.training_state(), folder / lora_io.TRAINING_STATE_NAME)
            checkpoint_record = {
                "step": step,
                "epoch": epoch,
                "index_in_epoch": index,
                "loss": _finite_or_none(loss),
                "settings": settings.to_dict(),
                "base_model_sha256": base_sha256,
                "dataset_sha256": data_sha256,
            }
            lora_io.write_json(folder / lora_io.CHECKPOINT_RECORD_NAME, checkpoint_record)
        written_step = step
        lora_io.prune_checkpoints(output_dir, settings.keep_checkpoints)
        if on_checkpoint is not None:
            on_checkpoint(step, target)
        return target

    def validate() -> None:
        if on_validation is None or not settings.validation_prompts:
            return
        images = trainer.validation_images(
            settings.validation_prompts,
            settings.validation_seeds,
            steps=settings.validation_steps,
            resolution=settings.resolution,
        )
        on_validation(step, images)

    while step < total:
        step_started = time.perf_counter()
        batches, next_epoch, next_index = step_batches(count, settings, epoch, index)
        examples_in_step = sum(len(batch) for batch in batches)
        trainer.zero_grad()
        step_loss = torch.zeros((), dtype=torch.float32, device=choice.device)  # one device sync a step
        for batch in batches:
            selection = torch.from_numpy(batch)
            conditioning = prompt_table[prompt_rows[selection]]
            micro_loss = trainer.loss(latents[selection], conditioning, weights[selection])
            # Each micro-batch counts by its share of the step's examples: accumulating gives the gradient of
            # one batch of all of them, also when the epoch's last micro-batch is smaller.
            share = len(batch) / examples_in_step
            trainer.backward(micro_loss, share)
            step_loss += micro_loss.detach().float() * share
        grad_norm, learning_rate = trainer.optimizer_step()
        step_epoch = epoch
        step, epoch, index = step + 1, next_epoch, next_index
        loss = float(step_loss)
        seconds = time.perf_counter() - step_started
        if progress is not None:
            progress(
                StepReport(
                    step=step,
                    total_steps=total,
                    epoch=step_epoch,
                    loss=loss,
                    lr=learning_rate,
                    grad_norm=grad_norm,
                    images_per_second=examples_in_step / seconds if seconds > 0 else math.inf,
                )
            )
        if step >= total:
            break
        if settings.checkpoint_every and step % settings.checkpoint_every == 0:
            write_checkpoint()
        if settings.validation_every and step % settings.validation_every == 0:
            validate()
        if should_stop is not None and should_stop():
            stopped_at = write_checkpoint() if written_step != step else lora_io.latest_checkpoint(output_dir)
            return TrainingResult(
                adapter_dir=stopped_at,
                steps=step,
                final_loss=loss,
                metadata=metadata(completed=False),
                resumed_from=resumed_from,
            )

    if written_step != step:
        write_checkpoint()
    final = metadata(completed=True)
    adapter_dir = output_dir / ADAPTER_FOLDER
    with lora_io.atomic_directory(adapter_dir) as folder:
        lora_io.write_adapter(folder, trainer.lora_layers(), trainer.lora_configs, final)
    validate()
    return TrainingResult(
        adapter_dir=adapter_dir, steps=step, final_loss=loss, metadata=final, resumed_from=resumed_from
    )
