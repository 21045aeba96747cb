"""The one validation of a generation request, used by the form, the service and the API: prompts from a
template, model and adapter folders, settings, seeds. Everything a worker would trip over is found here, before any
row exists.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generation.lora import AdapterError, AdapterInfo, check_adapter_dir
from generation.pipeline import (
    MAX_SEED,
    GenerationSettings,
    check_model_dir,
    normalize_scheduler_name,
)
from generation.prompts import MAX_PROMPTS, FieldValues, PromptError, expand_template, parse_counts, repeat_prompts
from generation.roots import PathRefused, is_demo_model, resolve_in_roots

# --- prompts from a template with field values ------------------------------------------------------------------

_FIELD_LINE = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*[=:]\s*(?P<value>.*?)\s*$")
_COUNTS_START = re.compile(r"^\s*\d+\s*[x×*]\s", re.IGNORECASE)


def parse_template_fields(text: str | Mapping[str, str]) -> dict[str, FieldValues]:
    """Field values for `expand_template`, one field per line as `name = value`: a value starting with a count
    ("100 x No findings, 100 x small right pleural effusion") gives prompts with counts, values separated by
    " | " ("PA | AP") give every alternative once, anything else is one literal value."""
    if isinstance(text, Mapping):
        lines = [f"{name} = {value}" for name, value in text.items()]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
    fields: dict[str, FieldValues] = {}
    for number, line in enumerate(lines, start=1):
        found = _FIELD_LINE.match(line)
        if found is None:
            raise PromptError(f"Line {number} ({line.strip()!r}) is not of the form 'name = value'.")
        name, value = found["name"], found["value"]
        if name in fields:
            raise PromptError(f"Field {name} is given twice.")
        if not value:
            raise PromptError(f"Field {name} has no value.")
        if _COUNTS_START.match(value):
            fields[name] = parse_counts(value)
        elif " | " in value:
            fields[name] = [part.strip() for part in value.split(" | ") if part.strip()]
        else:
            fields[name] = value
    return fields


def prompts_from_template(template: str, fields: str | Mapping[str, str], *, interleave: bool = True) -> list[str]:
    """Every prompt of a caption template filled from `parse_template_fields(fields)`, each as often as its counts
    say; interleaved by default, so that the part of a batch done before a stop holds the prompts in proportion."""
    if not template.strip():
        raise PromptError("The template is empty.")
    return repeat_prompts(expand_template(template, parse_template_fields(fields)), interleave=interleave)


# --- checking a request -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRequest:
    """What a form or API call asks for, before any check. Paths are absolute or relative to MODEL_ROOT; `seeds`
    gives every image its seed, otherwise image i gets `base_seed + i` (a random base seed when None)."""

    base_model: str
    prompts: tuple[str, ...]
    adapter: str = ""
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    seeds: tuple[int, ...] | None = None
    base_seed: int | None = None
    write_dicom: bool = False
    name: str = ""


@dataclass(frozen=True)
class CheckedBatch:
    """A request that passed every check, with its folders resolved and a seed for every image."""

    request: BatchRequest
    base_model_dir: Path
    adapter_dir: Path | None
    generator_label: str
    is_demo_model: bool
    seeds: tuple[int, ...]
    base_seed: int | None
    scheduler: str
    name: str


class BatchInvalid(ValueError):
    """A batch request with problems, as sentences per field ("__all__" for the request as a whole)."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {name: list(messages) for name, messages in errors.items()}
        super().__init__(" ".join(message for messages in self.errors.values() for message in messages))


# The first words of each GenerationSettings problem, and the field it is about.
_SETTINGS_PROBLEM_FIELDS = (
    ("Steps", "steps"),
    ("Guidance", "guidance_scale"),
    ("Width", "width"),
    ("Height", "height"),
    ("Negative prompt", "negative_prompt"),
    ("Unknown scheduler", "scheduler"),
    ("Batch size", "batch_size"),
)


def settings_problem_field(problem: str) -> str:
    return next((name for prefix, name in _SETTINGS_PROBLEM_FIELDS if problem.startswith(prefix)), "__all__")


def generator_label(base_model_dir: Path, adapter: AdapterInfo | None) -> str:
    """ "sd21-base + cxr-lora (1a2b3c4d)": the folder names and the adapter's content hash, so that retraining an
    adapter in the same folder gives a new generator in the statistics."""
    label = base_model_dir.name
    if adapter is not None:
        name = adapter.path.name if adapter.path.is_dir() else adapter.path.stem
        label = f"{label} + {name} ({adapter.sha256[:8]})"
    return label[:120]


def batch_check(request: BatchRequest) -> CheckedBatch:
    """Check everything a worker would otherwise stumble on, from the files alone (no weights are loaded): model
    and adapter folders inside the model roots and loadable, the adapter fitting the model, the settings, the
    prompts and seeds. Raises BatchInvalid listing every problem by field."""
    errors: dict[str, list[str]] = {}

    def problem(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    base_model_dir = adapter_dir = adapter = None
    try:
        base_model_dir = resolve_in_roots(request.base_model)
    except PathRefused as error:
        problem("base_model", str(error))
    else:
        for message in check_model_dir(base_model_dir):
            problem("base_model", message)
        if "base_model" in errors:
            base_model_dir = None
    if request.adapter.strip():
        try:
            adapter_dir = resolve_in_roots(request.adapter)
            adapter = check_adapter_dir(adapter_dir)
        except (PathRefused, AdapterError) as error:
            problem("adapter", str(error))
        else:
            if base_model_dir is not None:
                message = _adapter_fit_problem(adapter, base_model_dir)
                if message:
                    problem("adapter", message)

    for message in request.settings.problems():
        problem(settings_problem_field(message), message)

    prompts = request.prompts
    if not prompts:
        problem("prompts", "No prompts given.")
    elif len(prompts) > MAX_PROMPTS:
        problem("prompts", f"{len(prompts)} prompts; a batch can have at most {MAX_PROMPTS}.")
    empty = [index + 1 for index, prompt in enumerate(prompts) if not str(prompt).strip()]
    if empty:
        problem("prompts", f"Prompt {empty[0]} is empty." if len(empty) == 1 else f"{len(empty)} prompts are empty.")

    base_seed = request.base_seed
    if request.seeds is not None:
        if len(request.seeds) != len(prompts):
            problem("seeds", f"{len(request.seeds)} seeds for {len(prompts)} prompts: give one seed per prompt.")
        bad = [seed for seed in request.seeds if isinstance(seed, bool) or not isinstance(seed, int)]
        bad += [seed for seed in request.seeds if isinstance(seed, int) and not 0 <= seed <= MAX_SEED]
        if bad:
            problem("seeds", f"Seed {bad[0]!r} is not a whole number from 0 to {MAX_SEED}.")
        seeds = tuple(request.seeds)
        base_seed = None
    else:
        if base_seed is None:
            # 32 bits: short enough to read and type, and far more seeds than a batch needs.
            base_seed = secrets.randbits(32)
        highest = MAX_SEED - max(len(prompts) - 1, 0)
        if isinstance(base_seed, bool) or not isinstance(base_seed, int) or not 0 <= base_seed <= highest:
            problem("base_seed", f"The base seed must be a whole number from 0 to {highest} (got {base_seed!r}).")
            seeds = ()
        else:
            seeds = tuple(base_seed + index for index in range(len(prompts)))

    if errors:
        raise BatchInvalid(errors)
    assert base_model_dir is not None
    label = generator_label(base_model_dir, adapter)
    name = request.name.strip() or f"{len(prompts)} images from {label}"
    return CheckedBatch(
        request=request,
        base_model_dir=base_model_dir,
        adapter_dir=adapter_dir,
        generator_label=label,
        is_demo_model=is_demo_model(base_model_dir),
        seeds=seeds,
        base_seed=base_seed,
        scheduler=normalize_scheduler_name(request.settings.scheduler),
        name=name[:200],
    )


def ml_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "diffusers", "transformers"))


def _adapter_fit_problem(adapter: AdapterInfo, base_model_dir: Path) -> str:
    """Why the adapter does not fit the model's layers, or "" (also when the web process has no torch to check
    with: the worker then checks before loading, and a misfit fails the batch with the same message)."""
    if not ml_available():
        return ""
    unet_config = base_model_dir / "unet" / "config.json"
    text_config = base_model_dir / "text_encoder" / "config.json"
    key = (
        str(adapter.weights_file),
        adapter.sha256,
        str(base_model_dir),
        unet_config.stat().st_mtime_ns,
        text_config.stat().st_mtime_ns,
    )
    with _fit_cache_lock:
        if key in _fit_cache:
            return _fit_cache[key]
    from generation.lora import check_adapter_fits

    try:
        check_adapter_fits(adapter, base_model_dir)
        message = ""
    except AdapterError as error:
        message = str(error)
    with _fit_cache_lock:
        _fit_cache[key] = message
    return message


_fit_cache: dict[tuple, str] = {}
_fit_cache_lock = threading.Lock()
