"""The files of a LoRA training run: adapters in diffusers' `save_lora_weights` layout, and checkpoints.

An adapter folder holds `pytorch_lora_weights.safetensors` with `unet.<module>.lora_A.weight` keys (and
`text_encoder.` ones when the text encoder was adapted) plus the LoRA configuration in the safetensors header, as
`StableDiffusionPipeline.save_lora_weights` writes it, and `training_metadata.json`; it loads through
`generation.lora.check_adapter_dir` / `load_generator` and diffusers' `load_lora_weights`. A checkpoint
(`checkpoints/step-000123/`) is such an adapter folder plus the optimizer, schedule and random states needed to
go on, and `checkpoint.json`. Every folder is written under a temporary name and renamed when complete, so a
killed worker leaves either a whole checkpoint or a `.partial-` folder that the next run removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from generation.lora import STANDARD_WEIGHT_NAMES

ADAPTER_WEIGHTS_NAME = STANDARD_WEIGHT_NAMES[0]  # pytorch_lora_weights.safetensors, diffusers' own name
METADATA_NAME = "training_metadata.json"
CHECKPOINTS_FOLDER = "checkpoints"
CHECKPOINT_RECORD_NAME = "checkpoint.json"  # written last: a checkpoint folder without it is not one
TRAINING_STATE_NAME = "training_state.pt"
PARTIAL_PREFIX = ".partial-"
LORA_COMPONENTS = ("unet", "text_encoder")
_CHECKPOINT_NAME = re.compile(r"^step-(?P<step>\d{6,})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; when the block ends without error it becomes `target`.

    The rename is atomic on one filesystem. A `target` that already exists is moved aside first and removed
    after the rename, so there is a moment without it; that only happens when a finished run is asked again."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{PARTIAL_PREFIX}{target.name}-{uuid.uuid4().hex[:12]}")
    temporary.mkdir()  # mkdir, not mkdtemp: the folder gets the umask's permissions, readable by the web process
    try:
        yield temporary
        replaced = None
        if target.exists():
            replaced = target.with_name(f"{PARTIAL_PREFIX}{target.name}-replaced-{uuid.uuid4().hex[:12]}")
            os.replace(target, replaced)
        os.replace(temporary, target)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def remove_partial_writes(
    output_dir: Path, cache_folders: tuple[str, ...] = ("cache/latents", "cache/text")
) -> list[Path]:
    """Delete what a killed run left half-written: `.partial-` folders in `output_dir` and its checkpoints
    folder, `.partial-` files in the cache folders."""
    output_dir = Path(output_dir)
    removed = []
    for folder in (output_dir, output_dir / CHECKPOINTS_FOLDER, *(output_dir / name for name in cache_folders)):
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if not child.name.startswith(PARTIAL_PREFIX):
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(child)
    return removed


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint in `output_dir`, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT_NAME.match(child.name)
        if match and child.is_dir() and (child / CHECKPOINT_RECORD_NAME).is_file():
            found.append((int(match["step"]), child))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def prune_checkpoints(output_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints; returns the folders deleted."""
    doomed = [path for _step, path in list_checkpoints(output_dir)[:-keep]] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def read_checkpoint_record(checkpoint_dir: Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / CHECKPOINT_RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Checkpoint record {path} cannot be read: {error}.") from error
    if not isinstance(record, dict):
        raise ValueError(f"Checkpoint record {path} does not hold a JSON object.")
    return record


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def write_adapter(
    directory: Path,
    layers: Mapping[str, Mapping[str, Any]],
    lora_configs: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
) -> Path:
    """Write LoRA factors (`layers`: component -> peft state dict without the component prefix, e.g.
    `down_blocks.0...to_q.lora_A.weight`) with `StableDiffusionPipeline.save_lora_weights`, the LoRA configs in
    the safetensors header (so that an alpha other than the rank loads with the right scale), and `metadata`
    as training_metadata.json."""
    from diffusers import StableDiffusionPipeline

    directory = Path(directory)
    # Deep copies: diffusers rewrites the metadata dicts in place (sets to lists).
    configs = {name: json.loads(json.dumps(config, default=list)) for name, config in lora_configs.items()}
    StableDiffusionPipeline.save_lora_weights(
        save_directory=directory,
        unet_lora_layers=dict(layers["unet"]),
        text_encoder_lora_layers=dict(layers["text_encoder"]) if "text_encoder" in layers else None,
        safe_serialization=True,
        weight_name=ADAPTER_WEIGHTS_NAME,
        unet_lora_adapter_metadata=configs.get("unet"),
        text_encoder_lora_adapter_metadata=configs.get("text_encoder"),
    )
    write_json(directory / METADATA_NAME, metadata)
    return directory


def read_adapter_layers(directory: Path) -> dict[str, dict[str, Any]]:
    """The LoRA factors of an adapter written by `write_adapter`, per component, without the prefixes."""
    from safetensors.torch import load_file

    raw = load_file(str(Path(directory) / ADAPTER_WEIGHTS_NAME), device="cpu")
    layers: dict[str, dict[str, Any]] = {}
    for key, tensor in raw.items():
        component, _, name = key.partition(".")
        if component not in LORA_COMPONENTS:
            raise ValueError(f"{directory}: key {key!r} belongs to no LoRA component ({', '.join(LORA_COMPONENTS)}).")
        layers.setdefault(component, {})[name] = tensor
    return layers
