"""The imaging package stands alone: no Django, no ML library, importable by any process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging.read import read_image
from tests.imaging.builders import pil_bytes

MODULES = ["imaging", "imaging.errors", "imaging.png", "imaging.read", "imaging.normalise", "imaging.dicom_write"]


def test_importing_imaging_loads_neither_django_nor_ml_libraries() -> None:
    modules = ", ".join(repr(name) for name in [*MODULES, "imaging.phantom"])
    script = (
        "import importlib, sys\n"
        f"for name in [{modules}]:\n"
        "    importlib.import_module(name)\n"
        "heavy = ('django', 'torch', 'diffusers', 'transformers', 'cv2', 'segment_anything')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "[]"


def test_decoded_pixels_are_read_only() -> None:
    decoded = read_image(pil_bytes(Image.new("L", (4, 4), 9), "PNG"))

    assert not decoded.pixels.flags.writeable
    with pytest.raises(ValueError):
        decoded.pixels[0, 0] = 1.0
    # Views share the buffer and must refuse writes too (np.array would copy, and a copy is always writable).
    assert not np.asarray(decoded.pixels).flags.writeable
    assert not decoded.pixels[1:, 1:].flags.writeable
    assert not decoded.pixels.T.flags.writeable
