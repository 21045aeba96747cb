"""Time the imaging pipeline on the shared CXR samples: decode, normalise for serving, phantom generation.

Also compares the size of the served PNGs (fixed "Up" filter, zlib level 6) with Pillow's adaptive filtering
at the same level, which backs the claim in imaging/png.py.

    .venv/bin/python benchmarks/imaging_bench.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import PIL
import pydicom
from PIL import Image

from imaging.normalise import normalise_for_serving, render_canvas
from imaging.phantom import chest_phantom
from imaging.png import encode_png_gray8
from imaging.read import read_image

REPO_ROOT = Path(__file__).resolve().parents[1]
CXR = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT / ".." / "shared" / "data")).resolve() / "cxr"

SAMPLES = {
    "PNG 1024x1024 (NIH)": "real/nih_cxr14/nih_00000001_000.png",
    "PNG 1477x1198 (Wikimedia)": "real/wikimedia/wikimedia_Chest_Xray_PA_3-8-2010.png",
    "JPEG 512x512 RGB (RoentGen)": "synthetic/roentgen_v2/roentgenv2_demo0002.jpg",
    "DICOM raw 1024x1024 8-bit (DX)": "dicom/nih_google_DX_00000002_000.dcm",
    "DICOM JPEG baseline 1024x1024 (CR)": (
        "dicom/rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
    ),
    "DICOM JPEG 2000 1841x1955 15-bit (CR)": "dicom/nema_wg04_RG1_J2KI_CR_chest.dcm",
}


def timed(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, best) wall time in milliseconds after one warm-up call."""
    action()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats

    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}, "
        f"pydicom {pydicom.__version__}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"median / best of {repeats}, milliseconds\n")
    print("| input | read_image | normalise_for_serving | served PNG | compressed, Up filter | Pillow (adaptive) |")
    print("|---|---|---|---|---|---|")
    for label, relative in SAMPLES.items():
        data = (CXR / relative).read_bytes()
        pixels = read_image(data).pixels
        read_ms = timed(lambda data=data: read_image(data), repeats)
        serve_ms = timed(lambda pixels=pixels: normalise_for_serving(pixels), repeats)
        served = normalise_for_serving(pixels)  # fixed length: the same for every image of a display size
        canvas = render_canvas(pixels)
        compressed = encode_png_gray8(canvas)  # what other PNGs of the project (masks, generated images) use
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, "PNG", compress_level=6)
        print(
            f"| {label} | {read_ms[0]:.0f} / {read_ms[1]:.0f} | {serve_ms[0]:.0f} / {serve_ms[1]:.0f} "
            f"| {len(served) / 1024:.0f} KiB | {len(compressed) / 1024:.0f} KiB | {buffer.tell() / 1024:.0f} KiB "
            f"({len(compressed) / buffer.tell() - 1:+.1%}) |"
        )

    for size in (512, 1024):
        median, best = timed(lambda size=size: chest_phantom(7, size=size), repeats)
        print(f"\nchest_phantom(size={size}): {median:.0f} / {best:.0f} ms")


if __name__ == "__main__":
    main()
