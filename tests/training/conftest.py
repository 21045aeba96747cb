"""Tiny SD 2.1-base-layout models (epsilon and v-prediction), small X-ray-like examples and quick settings."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    import torch

    from generation.tiny_models import build_tiny_stable_diffusion

    # The tiny models gain nothing from threads, and on a busy shared 2-core machine OpenMP's spin-waiting
    # makes two threads many times slower than one (see tests/generation/conftest.py).
    torch.set_num_threads(1)
    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


@pytest.fixture(scope="session")
def tiny_v_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights, with a scheduler configured for v-prediction (as SD 2.1 768 is)."""
    return with_prediction_type(tiny_model_dir, tmp_path_factory.mktemp("models") / "tiny-sd-v", "v_prediction")


def with_prediction_type(model_dir: Path, target: Path, prediction_type: str) -> Path:
    shutil.copytree(model_dir, target)
    config_path = target / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "prediction_type": prediction_type}))
    return target


def make_examples(count: int, *, size: int = 32, seed: int = 0, weights: list[float] | None = None) -> list:
    """`count` square grey images (smooth random texture) with distinct keys and two alternating prompts."""
    from training.loop import TrainingExample

    rng = np.random.default_rng(seed)
    examples = []
    for number in range(count):
        coarse = rng.random((size // 8, size // 8), dtype=np.float32)
        pixels = np.kron(coarse, np.ones((8, 8), dtype=np.float32))
        examples.append(
            TrainingExample(
                key=f"sha256-of-image-{seed}-{number}",
                pixels=pixels,
                prompt=("view_position = PA. small right pleural effusion.", "view_position = AP. normal.")[number % 2],
                weight=1.0 if weights is None else weights[number],
            )
        )
    return examples


def quick_settings(**changes):
    """Settings for a tiny run: 32 px, batch 2, a few steps, no periodic checkpoint."""
    from training.loop import TrainingSettings

    base = TrainingSettings(resolution=32, batch_size=2, max_steps=2, checkpoint_every=0)
    return replace(base, **changes)
