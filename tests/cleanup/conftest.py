"""Fixtures for the cleanup tests: rendered scenes with known artifact boxes and tiny offline models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cleanup.rendered_text import (
    render_bar,
    render_boxed_label,
    render_circled_letter,
    render_lead_marker,
    render_text,
)
from imaging.phantom import chest_phantom

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
CXR_DIR = SHARED_DATA / "cxr"
GROUND_TRUTH = Path(__file__).resolve().parent / "data" / "cxr_text_boxes.json"


@pytest.fixture(scope="session")
def clean_phantom() -> np.ndarray:
    """A 512 px chest phantom without any text (seed 0, style a)."""
    return chest_phantom(0, size=512)


@pytest.fixture(scope="session")
def labelled_scene(clean_phantom: np.ndarray) -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """The phantom with one artifact of each kind; returns the pixels and each artifact's box by name."""
    pixels = clean_phantom
    boxes = {}
    pixels, boxes["bright_text"] = render_text(pixels, "PORTABLE", x=340, y=240, height=14)
    pixels, boxes["dark_text"] = render_text(pixels, "SUPINE", x=30, y=330, height=14, polarity="dark")
    pixels, boxes["lead_marker"] = render_lead_marker(pixels, "L", x=450, y=30, height=26)
    pixels, boxes["circled_letter"] = render_circled_letter(pixels, "R", x=40, y=40, diameter=30)
    pixels, boxes["boxed_label"] = render_boxed_label(pixels, "Bettaufnahme", x=190, y=470, height=11)
    pixels, boxes["bar"] = render_bar(pixels, edge="top", start=220, length=140, thickness=8)
    return pixels, boxes


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from cleanup.torchvision_compat import import_segment_anything

    try:
        import_segment_anything()
    except ImportError as error:
        pytest.skip(f"segment_anything cannot be imported: {error}")
    from cleanup.segment import write_tiny_sam_checkpoint

    return write_tiny_sam_checkpoint(tmp_path_factory.mktemp("sam") / "sam_tiny.pth", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_inpainting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from generation.tiny_models import build_tiny_stable_diffusion

    # Latent size 8: the model's native images are 64 px, as SD-2-inpainting's 64-latent model makes 512 px.
    return build_tiny_stable_diffusion(
        tmp_path_factory.mktemp("sd") / "sd2-inpainting-tiny", seed=0, inpainting=True, sample_size=8
    )


@pytest.fixture
def no_queue(django_capture_on_commit_callbacks):
    """Jobs are run in-process by the test; the Celery message each start sends on commit is dropped."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks
