"""The demo model: a tiny randomly initialised Stable Diffusion 2.1-base look-alike and a LoRA for it, built
offline so that a generation batch runs end to end on a CPU in seconds (it draws noise, not X-rays).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generation.batch_check import ml_available
from generation.roots import DEMO_MARKER, is_demo_model
from generation.worker import configure_ml_runtime

DEMO_MODEL_NAME = "demo-tiny-sd"
DEMO_ADAPTER_NAME = "demo-tiny-lora"
DEMO_MARKER_TEXT = (
    "Demo model: a tiny Stable Diffusion 2.1-base look-alike with random weights, built offline by "
    "`manage.py demo`. It exercises the whole generation pipeline in seconds on a CPU but draws noise-like "
    "textures, not chest X-rays.\n"
)


# --- the demo model ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoModel:
    """Where the demo model and adapter are, or why they were not built (`message`)."""

    model_dir: Path | None
    adapter_dir: Path | None
    built: bool
    message: str


def demo_model_build(*, model_root: Path) -> DemoModel:
    """Build the tiny random demo model and a LoRA for it under `model_root` (once; later calls find them), so a
    batch runs end to end on a CPU in seconds. Skipped, with the reason, when torch or diffusers is missing."""
    model_dir, adapter_dir = Path(model_root) / DEMO_MODEL_NAME, Path(model_root) / DEMO_ADAPTER_NAME
    if is_demo_model(model_dir) and is_demo_model(adapter_dir):
        return DemoModel(model_dir, adapter_dir, built=False, message=f"Demo model found in {model_dir}.")
    for folder in (model_dir, adapter_dir):
        if folder.exists() and not is_demo_model(folder):
            return DemoModel(
                None, None, built=False, message=f"Demo model not built: {folder} exists and is not the demo's."
            )
    if not ml_available():
        return DemoModel(
            None,
            None,
            built=False,
            message="Demo model not built: torch, diffusers and transformers are not installed "
            "(pip install -c constraints.txt '.[ml]').",
        )
    import shutil

    from generation.tiny_models import build_tiny_lora, build_tiny_stable_diffusion

    configure_ml_runtime()
    building = Path(model_root) / f".{DEMO_MODEL_NAME}-building"
    shutil.rmtree(building, ignore_errors=True)
    build_tiny_stable_diffusion(building / DEMO_MODEL_NAME, seed=0)
    build_tiny_lora(building / DEMO_MODEL_NAME, building / DEMO_ADAPTER_NAME, seed=1)
    for name in (DEMO_MODEL_NAME, DEMO_ADAPTER_NAME):
        (building / name / DEMO_MARKER).write_text(DEMO_MARKER_TEXT, encoding="utf-8")
    # Moved into place only when complete, so an interrupted build never looks like a model.
    for source, target in ((building / DEMO_MODEL_NAME, model_dir), (building / DEMO_ADAPTER_NAME, adapter_dir)):
        shutil.rmtree(target, ignore_errors=True)
        source.rename(target)
    shutil.rmtree(building, ignore_errors=True)
    return DemoModel(model_dir, adapter_dir, built=True, message=f"Demo model built in {model_dir}.")
