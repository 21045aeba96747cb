"""Served file size, compressed (zlib level 6, the old served files) against fixed-length (zlib stored blocks).

For the shared CXR samples, real against synthetic, at several display sizes: bytes per served image (median per
class, maximum), how well the file size alone separates the classes (AUC), what a 100-case session downloads,
the bandwidth ratio and the encoding time per image. The canvas (decode, resize, pad, quantise) is rendered once
per image and size and is not timed; only the PNG encoding is.

    .venv/bin/python benchmarks/served_bytes.py [--real DIR ...] [--synthetic DIR ...] [--sizes 512 1024 2048]

Classes come from the folders given; where a MANIFEST.csv sits above them (the shared set has one), a file whose
category disagrees with its folder is reported and left out.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import PIL

from imaging.normalise import render_canvas
from imaging.png import encode_png_gray8, served_png_length
from imaging.read import read_image

REPO_ROOT = Path(__file__).resolve().parents[1]
CXR = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT / ".." / "shared" / "data")).resolve() / "cxr"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}
SESSION_CASES = 100  # half real, half synthetic
LINKS_MBIT = (10, 100)


def image_files(folders: list[Path]) -> list[Path]:
    files = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"Not a folder: {folder}")
        files += sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    return files


def manifest_classes(folders: list[Path]) -> dict[Path, bool]:
    """{file: is_synthetic} from the first MANIFEST.csv found in or above the given folders."""
    for folder in folders:
        for base in (folder, *folder.resolve().parents):
            manifest = base / "MANIFEST.csv"
            if manifest.is_file():
                with manifest.open(newline="") as handle:
                    return {
                        (base / row["file"]).resolve(): row["category"].startswith("synthetic")
                        for row in csv.DictReader(handle)
                    }
    return {}


def size_auc(real: list[int], synthetic: list[int]) -> float:
    """P(a real file is larger than a synthetic one), ties counting half (Mann-Whitney U / (n_real n_synthetic))."""
    real_sizes, synthetic_sizes = np.asarray(real)[:, None], np.asarray(synthetic)[None, :]
    return float(np.mean((real_sizes > synthetic_sizes) + 0.5 * (real_sizes == synthetic_sizes)))


def encode_ms(canvas: np.ndarray, fixed_length: bool, repeats: int) -> float:
    """Median wall time of one encoding, milliseconds, after a warm-up call."""
    encode_png_gray8(canvas, fixed_length=fixed_length)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode_png_gray8(canvas, fixed_length=fixed_length)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, nargs="+", default=[CXR / "real", CXR / "dicom"])
    parser.add_argument("--synthetic", type=Path, nargs="+", default=[CXR / "synthetic"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3, help="timed encodings per image (median)")
    args = parser.parse_args()

    declared = manifest_classes(args.real + args.synthetic)
    pixels: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for synthetic, folders in ((False, args.real), (True, args.synthetic)):
        for path in image_files(folders):
            if declared and declared.get(path.resolve(), synthetic) != synthetic:
                print(f"skipped {path}: MANIFEST.csv puts it in the other class", file=sys.stderr)
                continue
            pixels[synthetic].append(read_image(path.read_bytes()).pixels)
    if not pixels[False] or not pixels[True]:
        raise SystemExit("Need at least one real and one synthetic image.")

    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{len(pixels[False])} real, {len(pixels[True])} synthetic images; encode time: median over images of "
        f"the median of {args.repeats}; session: {SESSION_CASES // 2} real + {SESSION_CASES // 2} synthetic; "
        f"AUC: P(real file larger than synthetic), ties half\n"
    )
    print(
        "| size | encoding | median real (kB) | median synthetic (kB) | max (kB) | size AUC | "
        f"{SESSION_CASES}-case session (MB) | bandwidth ratio | encode (ms/image) | "
        + " | ".join(f"median s/image at {mbit} Mbit/s" for mbit in LINKS_MBIT)
        + " |"
    )
    print("|---|---|---|---|---|---|---|---|---|" + "---|" * len(LINKS_MBIT))
    for size in args.sizes:
        canvases = {label: [render_canvas(image, size=size) for image in images] for label, images in pixels.items()}
        results = {}
        for fixed_length in (False, True):
            sizes = {
                label: [len(encode_png_gray8(canvas, fixed_length=fixed_length)) for canvas in group]
                for label, group in canvases.items()
            }
            if fixed_length:
                assert set(sizes[False]) | set(sizes[True]) == {served_png_length(size, size)}
            times = [encode_ms(canvas, fixed_length, args.repeats) for group in canvases.values() for canvas in group]
            session = SESSION_CASES // 2 * (statistics.mean(sizes[False]) + statistics.mean(sizes[True]))
            results[fixed_length] = (sizes, session, statistics.median(times))
        for fixed_length, (sizes, session, milliseconds) in results.items():
            every = sizes[False] + sizes[True]
            typical = statistics.median(every)
            print(
                f"| {size} | {'fixed-length (stored)' if fixed_length else 'compressed (level 6)'} "
                f"| {statistics.median(sizes[False]) / 1000:,.0f} | {statistics.median(sizes[True]) / 1000:,.0f} "
                f"| {max(every) / 1000:,.0f} | {size_auc(sizes[False], sizes[True]):.2f} | {session / 1e6:,.1f} "
                f"| {session / results[False][1]:.2f} | {milliseconds:.1f} | "
                + " | ".join(f"{typical * 8 / (mbit * 1e6):.2f}" for mbit in LINKS_MBIT)
                + " |"
            )


if __name__ == "__main__":
    main()
