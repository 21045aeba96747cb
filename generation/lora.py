"""LoRA adapters for the generation pipeline: find the weights file, detect its layout, convert, and match it.

Two layouts are accepted:
- "peft": what `StableDiffusionPipeline.save_lora_weights` writes today (`pytorch_lora_weights.safetensors`,
  keys `unet.<module>.lora_A.weight` / `lora_B.weight`, optionally `text_encoder.<module>...`, optionally the
  LoRA config as `lora_adapter_metadata` in the safetensors header).
- "legacy_attn_procs": what `unet.save_attn_procs` wrote in diffusers <= 0.2x (`pytorch_lora_weights.bin`,
  keys `<block>.attn1.processor.to_q_lora.down.weight`). Today's diffusers looks only for `unet.`-prefixed
  keys and silently generates from the base model when given such a file, so these keys are converted here.

Whatever the layout, every key must name a linear layer of the model with the right shape: an adapter that
matches nothing is refused with `AdapterError`, and so is one where more than `UNMATCHED_TOLERANCE` of the
keys match nothing. Inspecting an adapter (`check_adapter_dir`) reads only the file headers and needs no
torch, so the web process can validate a form with it.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generation.hashing import file_sha256

AdapterFormat = Literal["peft", "legacy_attn_procs"]

# Names diffusers' savers use, in the order diffusers itself prefers them.
STANDARD_WEIGHT_NAMES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin")

# Share of adapter keys allowed to match no layer of the model before the adapter is refused. A handful of
# stray keys (a bias, an extra projection from a newer trainer) is tolerated and reported; anything more
# means the adapter was trained for another architecture.
UNMATCHED_TOLERANCE = 0.01

COMPONENTS = ("unet", "text_encoder")
_LEGACY_KEY = re.compile(
    r"^(?:unet\.)?(?P<module>.+)\.processor\.(?P<projection>to_q|to_k|to_v|to_out)_lora\.(?P<factor>down|up)\.weight$"
)
_PEFT_KEY = re.compile(r"^(?P<component>unet|text_encoder)\.(?P<module>.+)\.lora_(?P<factor>A|B)\.weight$")
_LEGACY_FACTOR = {"down": "A", "up": "B"}
_PEFT_FACTOR = {"A": "down", "B": "up"}
# safetensors dtype codes and torch storage class stems, both named as torch dtypes.
_DTYPE_NAMES = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "double": "float64",
    "float": "float32",
    "half": "float16",
    "bfloat16": "bfloat16",
}


class AdapterError(ValueError):
    """An adapter folder or file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of one stored tensor, read from the file header without loading the data."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter file holds, in the peft/diffusers key layout whatever the file's own layout."""

    path: Path
    weights_file: Path
    format: AdapterFormat
    sha256: str
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, Any] | None = None
    components: tuple[str, ...] = field(default=())
    rank: int | None = None

    @property
    def module_count(self) -> int:
        return len({lora_module_name(key) for key in self.tensors})

    def provenance(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "weights_file": self.weights_file.name,
            "sha256": self.sha256,
            "format": self.format,
            "rank": self.rank,
            "modules": self.module_count,
            "components": list(self.components),
        }


@dataclass(frozen=True)
class AdapterMatch:
    """The result of matching an adapter's keys against a model's linear layers."""

    matched: tuple[str, ...]
    unmatched: tuple[str, ...]
    reasons: Mapping[str, str]

    @property
    def unmatched_share(self) -> float:
        total = len(self.matched) + len(self.unmatched)
        return len(self.unmatched) / total if total else 1.0


# --- key layouts ----------------------------------------------------------------------------------------------------


def legacy_to_peft_key(key: str) -> str | None:
    """`a.attn1.processor.to_out_lora.up.weight` -> `unet.a.attn1.to_out.0.lora_B.weight`, else None."""
    found = _LEGACY_KEY.match(key)
    if found is None:
        return None
    projection = found["projection"]
    # The output projection is the first element of `to_out` (a Linear followed by Dropout).
    target = "to_out.0" if projection == "to_out" else projection
    return f"unet.{found['module']}.{target}.lora_{_LEGACY_FACTOR[found['factor']]}.weight"


def peft_to_legacy_key(key: str) -> str:
    """The inverse of `legacy_to_peft_key` for UNet attention projections."""
    found = _PEFT_KEY.match(key)
    if found is None or found["component"] != "unet":
        raise AdapterError(f"Key {key!r} is not a UNet LoRA key in the peft layout.")
    module, _, projection = found["module"].removesuffix(".0").rpartition(".")
    if projection not in ("to_q", "to_k", "to_v", "to_out") or not module:
        raise AdapterError(f"Key {key!r} is not an attention projection; the legacy layout has no name for it.")
    return f"{module}.processor.{projection}_lora.{_PEFT_FACTOR[found['factor']]}.weight"


def legacy_to_peft_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a legacy attention-processor state dict to the peft layout; keys that are not legacy LoRA keys
    are kept as they are, so that matching reports them instead of dropping them unseen."""
    return {legacy_to_peft_key(key) or key: value for key, value in state_dict.items()}


def peft_to_legacy_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {peft_to_legacy_key(key): value for key, value in state_dict.items()}


def detect_format(keys: Iterable[str]) -> AdapterFormat | None:
    """The layout most keys follow, or None when no key looks like a LoRA factor of either layout."""
    keys = list(keys)
    legacy = sum(1 for key in keys if _LEGACY_KEY.match(key))
    peft = sum(1 for key in keys if _PEFT_KEY.match(key))
    if legacy == 0 and peft == 0:
        return None
    return "legacy_attn_procs" if legacy > peft else "peft"


def lora_module_name(peft_key: str) -> str:
    """`unet.x.to_q.lora_A.weight` -> `unet.x.to_q` (the adapted layer, with its component prefix)."""
    return re.sub(r"\.lora_[AB]\.weight$", "", peft_key)


# --- reading headers without torch ----------------------------------------------------------------------------------


def _dtype_name(code: str) -> str:
    return _DTYPE_NAMES.get(code.lower(), code.lower())


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor shapes and the `__metadata__` of a safetensors file, from its JSON header (8-byte length +
    JSON)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise AdapterError(f"{path} is too short to be a safetensors file.")
        header_length = int.from_bytes(prefix, "little")
        if header_length <= 0 or 8 + header_length > size or header_length > 100_000_000:
            raise AdapterError(f"{path} is not a safetensors file (header length {header_length}, size {size}).")
        try:
            header = json.loads(handle.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise AdapterError(f"{path} has an unreadable safetensors header: {error}.") from error
    metadata = header.pop("__metadata__", None) or {}
    tensors = {
        name: TensorInfo(shape=tuple(entry["shape"]), dtype=_dtype_name(str(entry["dtype"])))
        for name, entry in header.items()
    }
    return tensors, metadata


class _StoragePlaceholder:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


def _rebuild_tensor_info(storage: _StoragePlaceholder, _offset: int, size: tuple[int, ...], *_rest: Any):
    return TensorInfo(shape=tuple(size), dtype=storage.dtype)


def _rebuild_parameter(data: TensorInfo, *_rest: Any) -> TensorInfo:
    return data


class _HeaderUnpickler(pickle.Unpickler):
    """Reads the pickle of a torch zip checkpoint, turning tensors into `TensorInfo` and refusing anything but
    the few globals a plain state dict needs (so a hostile file cannot run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict

            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_info
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _dtype_name(name.removesuffix("Storage") or "untyped")
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a LoRA state dict")

    def persistent_load(self, persistent_id: Any) -> _StoragePlaceholder:
        # ('storage', storage_type, key, location, numel); storage_type is what find_class returned above.
        return _StoragePlaceholder(str(persistent_id[1]))


def read_torch_checkpoint_header(path: Path) -> dict[str, TensorInfo]:
    """Key -> shape of a `torch.save` zip checkpoint (`.bin`), without torch and without running pickled
    code."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
            if not pickles:
                raise AdapterError(f"{path} is a zip file without data.pkl, not a torch checkpoint.")
            state = _HeaderUnpickler(archive.open(pickles[0])).load()
    except zipfile.BadZipFile as error:
        raise AdapterError(
            f"{path} is not a torch zip checkpoint (files from torch < 1.6 are not supported): {error}."
        ) from error
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, IndexError) as error:
        raise AdapterError(f"{path} could not be read as a state dict: {error}.") from error
    if not isinstance(state, Mapping) or not all(isinstance(value, TensorInfo) for value in state.values()):
        raise AdapterError(f"{path} does not hold a flat state dict of tensors.")
    return dict(state)


# --- finding and inspecting an adapter ------------------------------------------------------------------------------


def find_weights_file(path: Path) -> Path:
    """The adapter weights file: `path` itself if it is a file, else the standard name or the only
    candidate."""
    path = Path(path)
    if not path.exists():
        raise AdapterError(f"Adapter path {path} does not exist.")
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise AdapterError(f"Adapter file {path} is neither .safetensors nor .bin.")
        return path
    for name in STANDARD_WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    candidates = sorted(child for child in path.iterdir() if child.is_file() and child.suffix in WEIGHT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise AdapterError(
            f"Adapter folder {path} holds no weights file (expected {' or '.join(STANDARD_WEIGHT_NAMES)})."
        )
    names = ", ".join(candidate.name for candidate in candidates)
    raise AdapterError(f"Adapter folder {path} holds several weights files ({names}); name one of them.")


def _lora_metadata(raw: Mapping[str, str]) -> dict[str, Any] | None:
    text = raw.get("lora_adapter_metadata")
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def check_adapter_dir(path: Path) -> AdapterInfo:
    """Inspect an adapter folder (or file) without loading weights: find the file, read its keys, detect the
    layout.

    Raises `AdapterError` for a missing or unreadable file, or one whose keys follow neither LoRA layout.
    Whether the keys fit a given model is checked by `match_adapter` (done at load time by the pipeline)."""
    weights_file = find_weights_file(path)
    try:
        if weights_file.suffix == ".safetensors":
            tensors, raw_metadata = read_safetensors_header(weights_file)
        else:
            tensors, raw_metadata = read_torch_checkpoint_header(weights_file), {}
    except OSError as error:
        raise AdapterError(f"Adapter file {weights_file} cannot be read: {error}.") from error
    if not tensors:
        raise AdapterError(f"Adapter file {weights_file} holds no tensors.")
    adapter_format = detect_format(tensors)
    if adapter_format is None:
        sample = ", ".join(sorted(tensors)[:3])
        raise AdapterError(
            f"Adapter file {weights_file} has no LoRA keys in the peft (unet.<module>.lora_A.weight) or "
            f"legacy attention-processor (<module>.processor.to_q_lora.down.weight) layout; "
            f"sample keys: {sample}."
        )
    if adapter_format == "legacy_attn_procs":
        tensors = legacy_to_peft_keys(tensors)
    components = tuple(component for component in COMPONENTS if any(key.startswith(f"{component}.") for key in tensors))
    ranks = {info.shape[0] for key, info in tensors.items() if key.endswith(".lora_A.weight") and info.shape}
    return AdapterInfo(
        path=Path(path),
        weights_file=weights_file,
        format=adapter_format,
        sha256=file_sha256(weights_file),
        tensors=tensors,
        metadata=_lora_metadata(raw_metadata),
        components=components,
        rank=ranks.pop() if len(ranks) == 1 else None,
    )


# --- matching against a model ---------------------------------------------------------------------------------------


def linear_layer_shapes(**components: Any) -> dict[str, tuple[int, int]]:
    """`component.module` -> (out_features, in_features) for every torch Linear in the given modules."""
    import torch

    shapes: dict[str, tuple[int, int]] = {}
    for prefix, model in components.items():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                shapes[f"{prefix}.{name}"] = (module.out_features, module.in_features)
    return shapes


def model_linear_layer_shapes(base_model_dir: Path) -> dict[str, tuple[int, int]]:
    """Linear-layer shapes of a model folder's UNet and text encoder, built on the meta device from the
    configs (no weights are read, so this takes about a second even for the full-size model)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(base_model_dir / "unet"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(base_model_dir / "text_encoder"))
    return linear_layer_shapes(unet=unet, text_encoder=text_encoder)


def match_adapter(adapter: AdapterInfo, layer_shapes: Mapping[str, tuple[int, int]]) -> AdapterMatch:
    """Which adapter keys name a linear layer of the model with fitting shapes (A: rank x in, B: out x
    rank)."""
    matched: list[str] = []
    unmatched: list[str] = []
    reasons: dict[str, str] = {}
    for key, info in adapter.tensors.items():
        found = _PEFT_KEY.match(key)
        layer = lora_module_name(key) if found else None
        if found is None:
            reasons[key] = "not a LoRA factor key"
        elif layer not in layer_shapes:
            reasons[key] = "no such linear layer in the model"
        else:
            out_features, in_features = layer_shapes[layer]
            expected_dim = in_features if found["factor"] == "A" else out_features
            actual_dim = info.shape[1] if found["factor"] == "A" else info.shape[0]
            if len(info.shape) != 2 or actual_dim != expected_dim:
                reasons[key] = f"shape {list(info.shape)} does not fit layer ({out_features} x {in_features})"
        (unmatched if key in reasons else matched).append(key)
    return AdapterMatch(matched=tuple(matched), unmatched=tuple(unmatched), reasons=reasons)


def require_match(adapter: AdapterInfo, match: AdapterMatch, *, tolerance: float | None = None) -> None:
    """Raise `AdapterError` if nothing matched or the unmatched share exceeds `tolerance` (by default
    UNMATCHED_TOLERANCE, read at call time)."""
    tolerance = UNMATCHED_TOLERANCE if tolerance is None else tolerance
    if not match.unmatched:
        return
    sample = "; ".join(f"{key} ({match.reasons[key]})" for key in match.unmatched[:5])
    total = len(match.matched) + len(match.unmatched)
    if not match.matched:
        raise AdapterError(
            f"Adapter {adapter.weights_file} ({adapter.format}) matches no layer of the model: none of its "
            f"{total} keys fit. Was it trained for another base model? Unmatched keys: {sample}."
        )
    if match.unmatched_share > tolerance:
        raise AdapterError(
            f"Adapter {adapter.weights_file} ({adapter.format}) only partly matches the model: "
            f"{len(match.unmatched)} of {total} keys fit no layer (more than the {tolerance:.0%} tolerated). "
            f"Unmatched keys: {sample}."
        )


def check_adapter_fits(adapter: AdapterInfo, base_model_dir: Path) -> AdapterMatch:
    """Match an inspected adapter against a model folder's layers without loading weights (needs torch and
    diffusers, about a second for the full-size model); AdapterError if it does not fit (see `require_match`)."""
    match = match_adapter(adapter, model_linear_layer_shapes(Path(base_model_dir)))
    require_match(adapter, match)
    return match


def load_adapter_state_dict(adapter: AdapterInfo, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The adapter's tensors (CPU, as stored) in the peft layout, restricted to `keys` when given."""
    import torch

    if adapter.weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(adapter.weights_file), device="cpu")
    else:
        raw = torch.load(adapter.weights_file, map_location="cpu", weights_only=True)
    state_dict = legacy_to_peft_keys(raw) if adapter.format == "legacy_attn_procs" else dict(raw)
    if keys is not None:
        wanted = set(keys)
        state_dict = {key: value for key, value in state_dict.items() if key in wanted}
    return state_dict
