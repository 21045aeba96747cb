"""Tiny, randomly initialised SD 2.1-base-layout models and LoRA adapters, built offline once a session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from generation.tiny_models import build_tiny_stable_diffusion

    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


@pytest.fixture(scope="session")
def tiny_inpainting_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from generation.tiny_models import build_tiny_stable_diffusion

    path = tmp_path_factory.mktemp("models") / "tiny-sd-inpainting"
    return build_tiny_stable_diffusion(path, seed=0, inpainting=True)


@pytest.fixture(scope="session")
def tiny_peft_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generation.tiny_models import build_tiny_lora

    return build_tiny_lora(
        tiny_model_dir, tmp_path_factory.mktemp("adapters") / "peft", format="peft", seed=1
    )


@pytest.fixture(scope="session")
def tiny_legacy_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as `tiny_peft_adapter_dir` (same seed), stored in the legacy attention-processor
    layout."""
    from generation.tiny_models import build_tiny_lora

    out_dir = tmp_path_factory.mktemp("adapters") / "legacy"
    return build_tiny_lora(tiny_model_dir, out_dir, format="legacy_attn_procs", seed=1)
