"""Tiny, randomly initialised SD 2.1-base-layout models and LoRA adapters, built offline once a session."""

from pathlib import Path

import pytest


def _one_thread() -> None:
    import torch

    # The tiny models gain nothing from threads, and on a busy shared 2-core machine OpenMP's spin-waiting made
    # two threads up to 30 times slower than one (75 steps: 24 s against 0.7 s).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from generation.tiny_models import build_tiny_stable_diffusion

    _one_thread()
    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


@pytest.fixture(scope="session")
def tiny_inpainting_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from generation.tiny_models import build_tiny_stable_diffusion

    _one_thread()
    path = tmp_path_factory.mktemp("models") / "tiny-sd-inpainting"
    return build_tiny_stable_diffusion(path, seed=0, inpainting=True)


@pytest.fixture(scope="session")
def tiny_peft_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generation.tiny_models import build_tiny_lora

    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "peft", format="peft", seed=1)


@pytest.fixture(scope="session")
def tiny_legacy_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as `tiny_peft_adapter_dir` (same seed), stored in the legacy attention-processor
    layout."""
    from generation.tiny_models import build_tiny_lora

    out_dir = tmp_path_factory.mktemp("adapters") / "legacy"
    return build_tiny_lora(tiny_model_dir, out_dir, format="legacy_attn_procs", seed=1)
