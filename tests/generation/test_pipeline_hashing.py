"""Content hashes for provenance: right, cached per file version, and over the files the loader reads."""

import hashlib
import os
from pathlib import Path

from generation.hashing import clear_hash_cache, file_sha256, model_dir_sha256, model_files


def test_file_hash_is_sha256_and_cached_by_path_mtime_and_size(tmp_path: Path) -> None:
    clear_hash_cache()
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"first")
    assert file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    stat = path.stat()
    # Same size and modification time: the cached value is returned without reading the file again.
    path.write_bytes(b"other")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_sha256(path) == hashlib.sha256(b"other").hexdigest()


def make_model_folder(root: Path) -> Path:
    files = {
        "model_index.json": '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}',
        "unet/config.json": "{}",
        "unet/diffusion_pytorch_model.safetensors": "unet weights",
        "unet/diffusion_pytorch_model.fp16.safetensors": "fp16 variant",
        "unet/diffusion_pytorch_model.bin": "pickled duplicate",
        "v2-1_512-ema-pruned.ckpt": "original checkpoint",
        "README.md": "model card",
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_model_hash_covers_the_files_the_loader_reads(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")
    assert [path.relative_to(folder).as_posix() for path in model_files(folder)] == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    before = model_dir_sha256(folder)
    (folder / "README.md").write_text("edited model card")
    (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_text("other variant")
    assert model_dir_sha256(folder) == before
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_text("retrained unet weights")
    assert model_dir_sha256(folder) != before
