"""Content hashes of model and adapter files for provenance, computed once per file version and process.

A full-size SD 2.1-base folder holds gigabytes of weights; hashing them for every image would dominate a
worker's time, so each file's sha256 is cached under (resolved path, modification time, size) and recomputed
only when the file changes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

_CHUNK_BYTES = 8 * 1024 * 1024
_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()

# Component folders of a diffusers pipeline whose files define what it computes.
_MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, cached by (path, mtime, size)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with resolved.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        _cache[key] = value
    return value


def clear_hash_cache() -> None:
    with _lock:
        _cache.clear()


def is_variant_file(path: Path) -> bool:
    # `diffusion_pytorch_model.fp16.safetensors` is a variant; diffusers loads it only when asked to.
    return "." in path.name.removesuffix(path.suffix)


def model_files(model_dir: Path) -> list[Path]:
    """The files diffusers reads to build the pipeline: model_index.json, and per component its JSON/text
    configuration plus the weights it loads (non-variant safetensors when present, else non-variant .bin).
    Other files (a root .ckpt, fp16 variants, READMEs) are ignored, as they are by the loader."""
    model_dir = Path(model_dir)
    files = [model_dir / "model_index.json"]
    components = _MODEL_COMPONENTS
    index = model_dir / "model_index.json"
    if index.is_file():
        try:
            listed = json.loads(index.read_text(encoding="utf-8"))
            components = tuple(
                name
                for name, value in listed.items()
                if not name.startswith("_") and isinstance(value, list) and value[0] is not None
            )
        except (json.JSONDecodeError, UnicodeDecodeError, IndexError):
            pass
    for component in sorted(components):
        folder = model_dir / component
        if not folder.is_dir():
            continue
        children = sorted(child for child in folder.iterdir() if child.is_file())
        files += [child for child in children if child.suffix in (".json", ".txt", ".model")]
        for suffix in (".safetensors", ".bin"):
            weights = [child for child in children if child.suffix == suffix and not is_variant_file(child)]
            if weights:
                files += weights
                break
    return files


def model_dir_sha256(model_dir: Path) -> str:
    """One sha256 over `model_files(model_dir)`: each file's relative path and content hash, in sorted
    order."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in model_files(model_dir):
        if path.is_file():
            digest.update(f"{path.relative_to(model_dir).as_posix()}\t{file_sha256(path)}\n".encode())
    return digest.hexdigest()
