"""Text-to-image generation of synthetic chest X-rays from a local SD 2.1-base folder plus an optional LoRA.

`load_generator` loads a diffusers `StableDiffusionPipeline` once per worker process (cached), fuses the LoRA into
the weights, moves it to the chosen device and dtype and prepares the fast path (SDPA attention with fused QKV
projections, channels-last memory, optional `torch.compile`). `ImageGenerator.generate` turns prompts and seeds
into grayscale images with full provenance. Every image has its own seed and its own `torch.Generator` on the CPU,
so its starting noise, and hence its pixels, do not depend on the batch it ran in or its position there.

torch, diffusers, peft and transformers are imported inside the functions: importing this module needs none.

One job, and so one module despite its length: the diffusers pipeline from loading to pixels with provenance.
"""

from __future__ import annotations

import json
import math
import platform
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from generation.devices import (
    DeviceChoice,
    auto_batch_size,
    empty_cache,
    is_out_of_memory,
    select_device,
)
from generation.hashing import is_variant_file, model_dir_sha256
from generation.lora import (
    AdapterError,
    AdapterInfo,
    check_adapter_dir,
    linear_layer_shapes,
    load_adapter_state_dict,
    match_adapter,
    require_match,
)

# Scheduler names accepted in settings and forms -> (diffusers class, extra configuration).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "deis": ("DEISMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "kdpm2": ("KDPM2DiscreteScheduler", {}),
    "kdpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
}
SCHEDULER_ALIASES = {"dpmpp": "dpm++", "dpm": "dpm++", "euler_ancestral": "euler_a", "k_lms": "lms"}
DEFAULT_SCHEDULER = "default"  # whatever the model folder's scheduler/ configures (PNDM for SD 2.1-base)

MIN_SIZE, MAX_SIZE = 64, 2048
MAX_STEPS = 500
MAX_GUIDANCE = 30.0
MAX_BATCH_SIZE = 256
MAX_SEED = 2**63 - 1  # seeds are stored in signed 64-bit database columns
MAX_NEGATIVE_PROMPT_CHARS = 2000

# ITU-R BT.601 luma weights, as PIL's Image.convert("L"): a synthetic CXR is grey, the RGB output nearly so.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
TEXT_TO_IMAGE_PIPELINES = ("StableDiffusionPipeline",)
PIPELINE_CACHE_SIZE = 2
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class SettingsError(ValueError):
    """Generation settings out of range; `problems` lists each one as a sentence."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


class ModelError(ValueError):
    """A base model folder that cannot be loaded; `problems` lists what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


class GenerationError(RuntimeError):
    """Generation failed for a reason other than bad settings (e.g. out of memory at batch size 1)."""


def normalize_scheduler_name(name: str | None) -> str:
    """Canonical scheduler name ("default" for None); SettingsError for an unknown one."""
    if name is None or name.strip().lower() in ("", DEFAULT_SCHEDULER):
        return DEFAULT_SCHEDULER
    key = name.strip().lower()
    key = SCHEDULER_ALIASES.get(key, key)
    if key not in SCHEDULERS:
        known = ", ".join((DEFAULT_SCHEDULER, *SCHEDULERS))
        raise SettingsError([f"Unknown scheduler {name!r}; choose one of {known}."])
    return key


@dataclass(frozen=True)
class GenerationSettings:
    """How images are generated. Defaults are the reference setup: guidance 4, 75 steps, 512x512, the model's
    own scheduler (PNDM for SD 2.1-base), no negative prompt; `batch_size=None` fits the batch to memory."""

    steps: int = 75
    guidance_scale: float = 4.0
    width: int = 512
    height: int = 512
    negative_prompt: str = ""
    scheduler: str | None = None
    batch_size: int | None = None
    keep_rgb: bool = False

    def problems(self) -> list[str]:
        """Every problem with these settings, as sentences for a form; empty when they are valid."""
        found: list[str] = []

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS:
            found.append(f"Steps must be a whole number from 1 to {MAX_STEPS} (got {self.steps!r}).")
        guidance = self.guidance_scale
        if (
            isinstance(guidance, bool)
            or not isinstance(guidance, int | float)
            or not math.isfinite(guidance)
            or not 0 <= guidance <= MAX_GUIDANCE
        ):
            found.append(f"Guidance scale must be a number from 0 to {MAX_GUIDANCE:g} (got {guidance!r}).")
        for label, value in (("Width", self.width), ("Height", self.height)):
            if not is_int(value) or not MIN_SIZE <= value <= MAX_SIZE:
                found.append(f"{label} must be from {MIN_SIZE} to {MAX_SIZE} pixels (got {value!r}).")
            elif value % 8:
                found.append(
                    f"{label} must be a multiple of 8, the VAE's downsampling factor (got {value}; "
                    f"nearest are {value - value % 8} and {value - value % 8 + 8})."
                )
        if not isinstance(self.negative_prompt, str):
            found.append("Negative prompt must be text.")
        elif len(self.negative_prompt) > MAX_NEGATIVE_PROMPT_CHARS:
            found.append(f"Negative prompt is longer than {MAX_NEGATIVE_PROMPT_CHARS} characters.")
        try:
            normalize_scheduler_name(self.scheduler)
        except SettingsError as error:
            found.extend(error.problems)
        if self.batch_size is not None and (not is_int(self.batch_size) or not 1 <= self.batch_size <= MAX_BATCH_SIZE):
            found.append(f"Batch size must be empty (automatic) or 1 to {MAX_BATCH_SIZE} (got {self.batch_size!r}).")
        return found

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise SettingsError(problems)


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image: grayscale pixels (H x W float32 in [0, 1]), optionally the RGB output (H x W x 3
    uint8), the seed and prompt that made it, the seconds its share of the batch took, and its provenance."""

    pixels: np.ndarray
    seed: int
    prompt: str
    seconds: float
    provenance: dict[str, Any]
    rgb: np.ndarray | None = field(default=None, repr=False)


# --- checking a model folder without loading it ---------------------------------------------------------------------

_COMPONENT_FILES = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "scheduler": ("scheduler_config.json",),
}
_WEIGHTED_COMPONENTS = ("unet", "vae", "text_encoder")
_LFS_POINTER_PREFIX = b"version https://git-lfs"


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{path} cannot be read as JSON: {error}.")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path} does not hold a JSON object.")
        return None
    return value


def _weights_problem(folder: Path) -> str | None:
    weights = [path for path in folder.iterdir() if path.suffix in (".safetensors", ".bin") and path.is_file()]
    if not weights:
        return f"{folder} holds no weights (.safetensors or .bin)."
    if all(is_variant_file(path) for path in weights):
        names = ", ".join(sorted(path.name for path in weights))
        return f"{folder} holds only variant weights ({names}); the loader reads the plain file names."
    for path in weights:
        if path.stat().st_size < 1024:
            with path.open("rb") as handle:
                if handle.read(len(_LFS_POINTER_PREFIX)) == _LFS_POINTER_PREFIX:
                    return f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` in the model folder."
    return None


def check_model_dir(path: Path) -> list[str]:
    """Problems that would stop `path` loading as a text-to-image SD model, found from the files alone (no
    weights are read, so a form can call it); an empty list means the folder looks loadable."""
    path = Path(path)
    if not path.exists():
        return [f"Base model folder {path} does not exist."]
    if not path.is_dir():
        return [f"Base model path {path} is not a folder."]
    index_path = path / "model_index.json"
    if not index_path.is_file():
        return [f"{path} is not a diffusers model folder: model_index.json is missing."]
    problems: list[str] = []
    index = _read_json(index_path, problems)
    if index is None:
        return problems
    pipeline_class = index.get("_class_name")
    if pipeline_class not in TEXT_TO_IMAGE_PIPELINES:
        problems.append(
            f"{index_path} names {pipeline_class!r}; text-to-image generation needs a StableDiffusionPipeline "
            "model such as SD 2.1-base."
        )
    configs: dict[str, dict[str, Any]] = {}
    for component in REQUIRED_COMPONENTS:
        folder = path / component
        if not isinstance(index.get(component), list) or index[component][0] is None:
            problems.append(f"{index_path} lists no {component}.")
            continue
        if not folder.is_dir():
            problems.append(f"Component folder {folder} is missing.")
            continue
        for name in _COMPONENT_FILES.get(component, ()):
            if not (folder / name).is_file():
                problems.append(f"{folder / name} is missing.")
            else:
                config = _read_json(folder / name, problems)
                if config is not None:
                    configs[component] = config
        if component == "tokenizer" and not (
            (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()
        ):
            problems.append(f"{folder} holds neither tokenizer.json nor vocab.json.")
        if component in _WEIGHTED_COMPONENTS:
            problem = _weights_problem(folder)
            if problem:
                problems.append(problem)
    unet, text = configs.get("unet"), configs.get("text_encoder")
    if unet is not None and unet.get("in_channels", 4) != 4:
        problems.append(
            f"The UNet takes {unet.get('in_channels')} input channels; a text-to-image model takes 4 "
            "(9 is an inpainting model)."
        )
    if unet is not None and text is not None and unet.get("cross_attention_dim") != text.get("hidden_size"):
        problems.append(
            f"The UNet attends to {unet.get('cross_attention_dim')}-wide text features but the text encoder "
            f"gives {text.get('hidden_size')}: the components come from different models."
        )
    return problems


# --- provenance helpers ---------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "peft", "transformers", "accelerate", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda item: getattr(item, "tolist", lambda: str(item))()))


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler by name, configured from the model's own scheduler config (betas, prediction type)."""
    import diffusers

    key = normalize_scheduler_name(name)
    if key == DEFAULT_SCHEDULER:
        cls = getattr(diffusers, base_config["_class_name"])
        return cls.from_config(base_config)
    class_name, extra = SCHEDULERS[key]
    return getattr(diffusers, class_name).from_config(base_config, **extra)


# --- the generator --------------------------------------------------------------------------------------------------


class ImageGenerator:
    """A loaded pipeline on one device, ready to generate; get one from `load_generator` (which caches it)."""

    def __init__(
        self,
        pipeline: Any,
        *,
        base_model_dir: Path,
        base_model_sha256: str,
        adapter: AdapterInfo | None,
        unmatched_adapter_keys: Sequence[str],
        device: DeviceChoice,
        scheduler: str,
        compiled: str | None,
        load_seconds: float,
    ) -> None:
        self.pipeline = pipeline
        self.device = device
        self.default_scheduler = scheduler
        self.compiled = compiled  # the torch.compile mode, or None when the UNet runs eagerly
        self.load_seconds = load_seconds
        # The model's own scheduler configuration, from which every named scheduler is derived.
        self._base_scheduler_config = dict(pipeline.scheduler.config)
        self._scheduler_name = DEFAULT_SCHEDULER
        self._switch_scheduler(scheduler)
        # Lowered after an out-of-memory error, so later calls do not fail the same way again.
        self._batch_limit: int | None = None
        self._lock = threading.Lock()
        adapter_provenance = None
        if adapter is not None:
            adapter_provenance = adapter.provenance() | {
                "fused": True,
                "unmatched_keys_ignored": list(unmatched_adapter_keys),
            }
        self._provenance = {
            "base_model": {
                "path": str(base_model_dir),
                "sha256": base_model_sha256,
                "pipeline": type(pipeline).__name__,
            },
            "adapter": adapter_provenance,
            "device": device.name,
            "dtype": device.dtype,
            "attention": "sdpa",
            "compiled": compiled,
            "noise": "float32 on the CPU from torch.Generator(seed), one generator per image",
            "versions": library_versions(),
        }

    @property
    def provenance(self) -> dict[str, Any]:
        """What every image from this generator shares: model, adapter, device, dtype, versions."""
        return json.loads(json.dumps(self._provenance))

    def batch_size_for(self, settings: GenerationSettings) -> int:
        if settings.batch_size is not None:
            size = settings.batch_size
        else:
            size = auto_batch_size(
                self.device.device,
                self.device.dtype,
                settings.height,
                settings.width,
                guidance=settings.guidance_scale > 1,
            )
        return min(size, self._batch_limit) if self._batch_limit else size

    def _switch_scheduler(self, name: str) -> None:
        name = normalize_scheduler_name(name)
        if name != self._scheduler_name:
            self.pipeline.scheduler = make_scheduler(name, self._base_scheduler_config)
            self._scheduler_name = name

    def generate(
        self, prompts: Sequence[str], seeds: Sequence[int], settings: GenerationSettings | None = None
    ) -> list[GeneratedImage]:
        """One image per (prompt, seed) pair, in order. Raises SettingsError for bad input before any work."""
        settings = settings or GenerationSettings()
        problems = settings.problems()
        if len(prompts) != len(seeds):
            problems.append(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt.")
        problems += [f"Prompt {index + 1} is empty." for index, prompt in enumerate(prompts) if not str(prompt).strip()]
        problems += [
            f"Seed {seed!r} is not a whole number from 0 to {MAX_SEED}."
            for seed in seeds
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
        ]
        if problems:
            raise SettingsError(problems)
        with self._lock:
            self._switch_scheduler(settings.scheduler or self.default_scheduler)
            results: list[GeneratedImage] = []
            position = 0
            while position < len(prompts):
                batch = self.batch_size_for(settings)
                chunk = slice(position, position + batch)
                try:
                    results += self._generate_batch(list(prompts[chunk]), list(seeds[chunk]), settings, batch)
                except Exception as error:
                    if not is_out_of_memory(error):
                        raise
                    empty_cache(self.device.device)
                    if batch == 1:
                        raise GenerationError(
                            f"Out of memory on {self.device.name} generating one {settings.width}x"
                            f"{settings.height} image in {self.device.dtype}."
                        ) from error
                    self._batch_limit = max(1, batch // 2)
                    continue
                position += batch
            return results

    def _initial_noise(self, seeds: Sequence[int], settings: GenerationSettings) -> tuple[Any, list[Any]]:
        import torch

        pipeline = self.pipeline
        shape = (
            pipeline.unet.config.in_channels,
            settings.height // pipeline.vae_scale_factor,
            settings.width // pipeline.vae_scale_factor,
        )
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        # Drawn in float32 on the CPU whatever the device, so an image's noise depends on its seed alone.
        noise = torch.stack([torch.randn(shape, generator=generator) for generator in generators])
        return noise.to(self.device.device, self.device.torch_dtype()), generators

    def _generate_batch(
        self, prompts: list[str], seeds: list[int], settings: GenerationSettings, batch: int
    ) -> list[GeneratedImage]:
        import torch

        count = len(prompts)
        if self.compiled and count < batch:
            # A compiled UNet recompiles for every new batch shape; pad the last chunk with copies instead.
            prompts = prompts + [prompts[-1]] * (batch - count)
            seeds = seeds + [seeds[-1]] * (batch - count)
        latents, generators = self._initial_noise(seeds, settings)
        started = time.perf_counter()
        with torch.inference_mode():
            images = self.pipeline(
                prompt=prompts,
                negative_prompt=[settings.negative_prompt] * len(prompts),
                height=settings.height,
                width=settings.width,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance_scale,
                latents=latents,
                generator=generators,
                output_type="pt",
            ).images[:count]
            weights = torch.tensor(LUMA_WEIGHTS, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
            images = images.float()
            pixels = (images * weights).sum(dim=1).clamp(0, 1).cpu().numpy()
            rgb = None
            if settings.keep_rgb:
                rgb = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        seconds = (time.perf_counter() - started) / count
        shared = self._provenance | {
            "negative_prompt": settings.negative_prompt,
            "scheduler": {
                "name": self._scheduler_name,
                "class": type(self.pipeline.scheduler).__name__,
                "config": _json_safe(dict(self.pipeline.scheduler.config)),
            },
            "steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "width": settings.width,
            "height": settings.height,
            "batch_size": batch,
        }
        tokenizer = self.pipeline.tokenizer
        results = []
        for index in range(count):
            token_count = len(tokenizer(prompts[index], truncation=False).input_ids)
            provenance = _json_safe(
                shared
                | {
                    "prompt": prompts[index],
                    "prompt_truncated": token_count > tokenizer.model_max_length,
                    "seed": seeds[index],
                    "seconds": round(seconds, 4),
                }
            )
            results.append(
                GeneratedImage(
                    pixels=pixels[index].astype(np.float32, copy=False),
                    seed=seeds[index],
                    prompt=prompts[index],
                    seconds=seconds,
                    provenance=provenance,
                    rgb=None if rgb is None else rgb[index],
                )
            )
        return results


# --- loading --------------------------------------------------------------------------------------------------------


def _apply_adapter(pipeline: Any, adapter: AdapterInfo) -> list[str]:
    """Load the adapter into the float32 pipeline, fuse it into the weights and drop the LoRA layers; returns
    the keys ignored as unmatched (within tolerance). Raises AdapterError when it does not fit the model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    shapes = linear_layer_shapes(unet=pipeline.unet, text_encoder=pipeline.text_encoder)
    match = match_adapter(adapter, shapes)
    require_match(adapter, match)
    state_dict = load_adapter_state_dict(adapter, match.matched)
    metadata = dict(adapter.metadata or {})
    name = "adapter"
    components = []
    for component in ("unet", "text_encoder"):
        if not any(key.startswith(f"{component}.") for key in state_dict):
            continue
        components.append(component)
        # diffusers' LoraConfig comes from the file's metadata (rank, alpha) when it has some for this
        # component, and is inferred from the tensor shapes (alpha = rank, scale 1) otherwise.
        component_metadata = metadata if any(key.startswith(f"{component}.") for key in metadata) else None
        if component == "unet":
            pipeline.load_lora_into_unet(
                state_dict,
                network_alphas=None,
                unet=pipeline.unet,
                adapter_name=name,
                metadata=component_metadata,
                _pipeline=pipeline,
            )
        else:
            pipeline.load_lora_into_text_encoder(
                state_dict,
                network_alphas=None,
                text_encoder=pipeline.text_encoder,
                adapter_name=name,
                metadata=component_metadata,
                _pipeline=pipeline,
            )
    injected = sum(
        isinstance(module, BaseTunerLayer)
        for component in components
        for module in getattr(pipeline, component).modules()
    )
    expected = len({key.rsplit(".lora_", 1)[0] for key in state_dict})
    if injected != expected:
        raise AdapterError(
            f"Adapter {adapter.weights_file}: {expected} layers matched but {injected} received LoRA weights."
        )
    pipeline.fuse_lora(components=components, lora_scale=1.0, adapter_names=[name])
    pipeline.unload_lora_weights()
    return list(match.unmatched)


def _prepare_for_speed(pipeline: Any, device: DeviceChoice, *, compile_mode: str | None) -> None:
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipeline.unet.set_attn_processor(AttnProcessor2_0())
    pipeline.vae.set_attn_processor(AttnProcessor2_0())
    # One matmul for q, k and v (k and v in cross-attention); the LoRA is already fused into them.
    pipeline.fuse_qkv_projections()
    if device.kind != "cpu":
        # GPU tensor cores run convolutions in NHWC. On the CPU no gain was measurable (see benchmarks/README.md),
        # so it keeps the default layout.
        pipeline.unet.to(memory_format=torch.channels_last)
        pipeline.vae.to(memory_format=torch.channels_last)
    if device.kind == "cuda":
        # Process-wide, and right for a GPU worker: pick the fastest conv algorithms for the fixed shapes,
        # and let any float32 matmul use TF32.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if compile_mode is not None:
        pipeline.unet.compile(mode=None if compile_mode == "default" else compile_mode, fullgraph=True)
    pipeline.set_progress_bar_config(disable=True)


def _load(
    base_model_dir: Path,
    base_model_sha256: str,
    adapter: AdapterInfo | None,
    device: DeviceChoice,
    scheduler: str,
    compile_mode: str | None,
) -> ImageGenerator:
    from diffusers import StableDiffusionPipeline

    started = time.perf_counter()
    # Loaded in float32 on the CPU so that the LoRA is fused at full precision, whatever the target dtype.
    pipeline = StableDiffusionPipeline.from_pretrained(
        base_model_dir,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    unmatched = _apply_adapter(pipeline, adapter) if adapter is not None else []
    pipeline.to(device.torch_device(), device.torch_dtype())
    _prepare_for_speed(pipeline, device, compile_mode=compile_mode)
    return ImageGenerator(
        pipeline,
        base_model_dir=base_model_dir,
        base_model_sha256=base_model_sha256,
        adapter=adapter,
        unmatched_adapter_keys=unmatched,
        device=device,
        scheduler=scheduler,
        compiled=compile_mode,
        load_seconds=time.perf_counter() - started,
    )


def resolve_compile_mode(compile: bool | str, device: DeviceChoice) -> str | None:
    """The torch.compile mode for `compile`: None (eager) for False; for True, "max-autotune-no-cudagraphs" on
    GPUs (autotuned kernels without CUDA graphs, so that other batch sizes neither fail nor pin graph memory)
    and "default" on CPU and MPS; a string names the mode itself."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return "max-autotune-no-cudagraphs" if device.kind in ("cuda", "xpu") else "default"
    if compile not in COMPILE_MODES:
        raise SettingsError([f"Unknown compile mode {compile!r}; choose one of {', '.join(COMPILE_MODES)}."])
    return compile


_cache: OrderedDict[tuple[Any, ...], ImageGenerator] = OrderedDict()
_cache_lock = threading.Lock()


def load_generator(
    base_model_dir: Path,
    adapter_dir: Path | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    scheduler: str | None = None,
    compile: bool | str = False,
) -> ImageGenerator:
    """A ready `ImageGenerator`, loaded once per process for each (base model path and content, adapter path
    and content, device, dtype, scheduler, compile mode) and kept for later calls (the last PIPELINE_CACHE_SIZE).
    `compile` compiles the UNet with torch.compile (see `resolve_compile_mode`); the first batch of each shape
    then takes minutes, later ones run faster.

    Raises ModelError, AdapterError, DeviceError or SettingsError, each with a message naming the problem,
    before any weights are loaded.
    """
    base_model_dir = Path(base_model_dir).resolve()
    problems = check_model_dir(base_model_dir)
    if problems:
        raise ModelError(problems)
    adapter = check_adapter_dir(Path(adapter_dir).resolve()) if adapter_dir is not None else None
    choice = select_device(device, dtype)
    scheduler_name = normalize_scheduler_name(scheduler)
    compile_mode = resolve_compile_mode(compile, choice)
    base_sha256 = model_dir_sha256(base_model_dir)
    key = (
        str(base_model_dir),
        base_sha256,
        str(adapter.weights_file) if adapter else None,
        adapter.sha256 if adapter else None,
        choice.device,
        choice.dtype,
        scheduler_name,
        compile_mode,
    )
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        generator = _load(base_model_dir, base_sha256, adapter, choice, scheduler_name, compile_mode)
        _cache[key] = generator
        while len(_cache) > PIPELINE_CACHE_SIZE:
            _, evicted = _cache.popitem(last=False)
            del evicted
            empty_cache(choice.device)
        return generator


def clear_pipeline_cache() -> None:
    """Forget every loaded pipeline (and free its device memory once nothing else holds it)."""
    with _cache_lock:
        devices = {generator.device.device for generator in _cache.values()}
        _cache.clear()
    for device in devices:
        empty_cache(device)
