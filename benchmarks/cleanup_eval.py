"""Evaluate and time text-artifact cleanup (issue 5) on the shared chest X-rays and on rendered labels.

What it measures, for the default configuration (``xray`` detector, glyph masks, classical Telea inpainting):

1. Detection against the hand-annotated boxes in ``tests/cleanup/data/cxr_text_boxes.json`` (all 40 images, the
   33 real ones, the 7 synthetic ones; recall per label), matched as ``cleanup.evaluation`` documents (IoU >= 0.3,
   or half covered; see there).
2. Detection on rendered artifacts of known position (digital text in both polarities, lead letters, circled
   letters, boxed labels, bars) drawn onto clean central crops of the real X-rays and onto phantoms.
3. Cleanup of all 40 images: the share with no residual detection and with no residual OCR text after cleanup,
   and whether every pixel outside the dilated mask is unchanged (it must be, exactly).
4. Throughput of the classical CPU path on the 1024 x 1024 images (end to end: detect, segment, inpaint, verify).
5. The SAM + Stable Diffusion inpainting path: with the tiny offline models by default; with real checkpoints
   (``--sam-checkpoint``, ``--sd-model``), or with the full-size architectures and random weights
   (``--full-size-random``: SAM ViT-H and the stable-diffusion-2-inpainting UNet/VAE/text encoder, built
   offline), on ``--device`` (a GPU when there is one).

Run from the repository root:

    .venv/bin/python benchmarks/cleanup_eval.py                      # everything CPU-feasible, tiny models
    .venv/bin/python benchmarks/cleanup_eval.py --verbose            # plus every miss and false positive
    .venv/bin/python benchmarks/cleanup_eval.py --only models --full-size-random --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cleanup.detect import TextBox, TextDetector, make_detector  # noqa: E402
from cleanup.evaluation import AnnotatedImage, DetectionScore, load_ground_truth, match_boxes  # noqa: E402
from cleanup.pipeline import CleanupConfig, build_stages, clean_image  # noqa: E402
from cleanup.rendered_text import (  # noqa: E402
    render_bar,
    render_boxed_label,
    render_circled_letter,
    render_lead_marker,
    render_text,
)
from imaging.phantom import chest_phantom  # noqa: E402
from imaging.read import read_image  # noqa: E402

DATA_DIR = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data")) / "cxr"
GROUND_TRUTH = REPO_ROOT / "tests" / "cleanup" / "data" / "cxr_text_boxes.json"
CACHE_DIR = REPO_ROOT / "var" / "benchmarks"
WORDS = ("PORTABLE", "SUPINE", "ERECT", "AP", "PA", "Bettaufnahme", "liegend", "Auf Station", "LAT", "JFC", "ETB")

Box = tuple[int, int, int, int]


def _box(b: TextBox) -> Box:
    return b.x, b.y, b.w, b.h


def load_images(data_dir: Path, names: list[str]) -> dict[str, np.ndarray]:
    return {name: read_image((data_dir / name).read_bytes()).pixels for name in names}


# ------------------------------------------------------------------------------------------ detection


def detection_report(
    images: dict[str, np.ndarray], truth: dict[str, AnnotatedImage], detector: TextDetector, verbose: bool
) -> dict[str, Any]:
    scores = {
        "all": DetectionScore(0, 0, 0, 0),
        "real": DetectionScore(0, 0, 0, 0),
        "synthetic": DetectionScore(0, 0, 0, 0),
    }
    per_label: Counter[str] = Counter()
    found_label: Counter[str] = Counter()
    misses, false_positives, seconds = [], [], []
    for name, pixels in images.items():
        started = time.perf_counter()
        boxes = detector.detect(pixels)
        seconds.append(time.perf_counter() - started)
        annotated = truth[name].boxes
        match = match_boxes([a.box for a in annotated], [_box(b) for b in boxes])
        subset = "synthetic" if name.startswith("synthetic/") else "real"
        scores["all"] = scores["all"] + match.score
        scores[subset] = scores[subset] + match.score
        for box, found in zip(annotated, match.found, strict=True):
            per_label[box.label] += 1
            found_label[box.label] += found
            if not found:
                misses.append({"file": name, "label": box.label, "text": box.text, "box": box.box})
        for box, correct in zip(boxes, match.correct, strict=True):
            if not correct:
                false_positives.append({"file": name, "box": _box(box), "source": box.source, "text": box.text})
    if verbose:
        for miss in misses:
            print(f"  miss  {miss['file']}: {miss['label']} {miss['text'] or ''} {miss['box']}")
        for fp in false_positives:
            print(f"  false {fp['file']}: {fp['box']} from {fp['source']} {fp['text'] or ''}")
    return {
        "subsets": {
            key: {
                "recall": score.recall,
                "precision": score.precision,
                "annotated": score.ground_truth,
                "found": score.found,
                "detections": score.detections,
                "correct": score.correct,
            }
            for key, score in scores.items()
        },
        "recall_by_label": {label: found_label[label] / per_label[label] for label in sorted(per_label)},
        "misses": misses,
        "false_positives": false_positives,
        "seconds_per_image": float(np.mean(seconds)),
    }


# ----------------------------------------------------------------------------------- rendered labels


def clean_crop(pixels: np.ndarray, annotated: AnnotatedImage, size: int) -> np.ndarray | None:
    """The central square of the image (60% of its short side) scaled to ``size``, if no annotation touches it."""
    import cv2

    height, width = pixels.shape
    side = int(0.6 * min(height, width))
    x0, y0 = (width - side) // 2, (height - side) // 2
    crop_box = (x0, y0, side, side)
    if any(match_boxes([crop_box], [a.box]).found[0] or _overlaps(crop_box, a.box) for a in annotated.boxes):
        return None
    crop = pixels[y0 : y0 + side, x0 : x0 + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(crop, (size, size), interpolation=interpolation), 0, 1).astype(np.float32)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def render_scene(base: np.ndarray, rng: np.random.Generator, count: int) -> tuple[np.ndarray, list[Box], list[str]]:
    """Draw ``count`` random artifacts at random, non-overlapping places (most near an edge, as labels are)."""
    size = base.shape[0]
    pixels, boxes, kinds = base, [], []
    attempts = 0
    while len(boxes) < count and attempts < 200:
        attempts += 1
        kind = str(rng.choice(["bright_text", "dark_text", "lead_marker", "circled_letter", "boxed_label", "bar"]))
        near_edge = rng.random() < 0.7
        margin = int(0.15 * size) if near_edge else size
        x, y = int(rng.integers(2, max(3, margin))), int(rng.integers(2, max(3, margin)))
        if near_edge and rng.random() < 0.5:
            x = size - x - int(0.3 * size)
        if near_edge and rng.random() < 0.5:
            y = size - y - int(0.1 * size)
        x, y = max(2, min(x, size - 2)), max(2, min(y, size - 2))
        try:
            if kind in ("bright_text", "dark_text"):
                height = int(rng.uniform(0.015, 0.03) * size)
                polarity = "bright" if kind == "bright_text" else "dark"
                candidate = render_text(pixels, str(rng.choice(WORDS)), x=x, y=y, height=height, polarity=polarity)
            elif kind == "lead_marker":
                height = int(rng.uniform(0.03, 0.05) * size)
                candidate = render_lead_marker(pixels, str(rng.choice(["L", "R"])), x=x, y=y, height=height)
            elif kind == "circled_letter":
                diameter = int(rng.uniform(0.04, 0.07) * size)
                candidate = render_circled_letter(pixels, str(rng.choice(["L", "R"])), x=x, y=y, diameter=diameter)
            elif kind == "boxed_label":
                height = int(rng.uniform(0.015, 0.025) * size)
                candidate = render_boxed_label(pixels, str(rng.choice(WORDS)), x=x, y=y, height=height)
            else:
                edge = str(rng.choice(["top", "bottom", "left", "right"]))
                length = int(rng.uniform(0.2, 0.35) * size)
                start = int(rng.integers(0, size - length))
                thickness = int(rng.uniform(0.01, 0.02) * size)
                candidate = render_bar(pixels, edge=edge, start=start, length=length, thickness=thickness)
        except ValueError:  # does not fit at this place
            continue
        new_pixels, box = candidate
        grown = (box[0] - 8, box[1] - 8, box[2] + 16, box[3] + 16)
        if any(_overlaps(grown, other) for other in boxes):
            continue
        pixels = new_pixels
        boxes.append(box)
        kinds.append(kind)
    return pixels, boxes, kinds


def rendered_report(
    images: dict[str, np.ndarray], truth: dict[str, AnnotatedImage], detector: TextDetector, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    bases = []
    for index, (name, pixels) in enumerate(sorted(images.items())):
        if name.startswith("synthetic/"):
            continue
        crop = clean_crop(pixels, truth[name], 1024 if index % 2 else 512)
        if crop is not None:
            bases.append(crop)
    bases += [chest_phantom(seed_, size=size) for seed_ in range(4) for size in (512, 1024)]
    total = DetectionScore(0, 0, 0, 0)
    kinds_total: Counter[str] = Counter()
    kinds_found: Counter[str] = Counter()
    for base in bases:
        pixels, boxes, kinds = render_scene(base, rng, count=3)
        match = match_boxes(boxes, [_box(b) for b in detector.detect(pixels)])
        total = total + match.score
        for kind, found in zip(kinds, match.found, strict=True):
            kinds_total[kind] += 1
            kinds_found[kind] += found
    return {
        "scenes": len(bases),
        "artifacts": total.ground_truth,
        "recall": total.recall,
        "precision": total.precision,
        "detections": total.detections,
        "correct": total.correct,
        "recall_by_kind": {kind: kinds_found[kind] / kinds_total[kind] for kind in sorted(kinds_total)},
    }


# --------------------------------------------------------------------------------------------- cleanup


def cleanup_report(images: dict[str, np.ndarray], config: CleanupConfig) -> dict[str, Any]:
    stages = build_stages(config)
    no_residual = no_residual_text = preserved = changed = 0
    stage_seconds: Counter[str] = Counter()
    residuals = []
    for name, pixels in images.items():
        result = clean_image(pixels, config, stages=stages)
        outside = result.mask == 0
        preserved += bool(np.array_equal(result.cleaned[outside], pixels[outside]))
        no_residual += not result.residual
        no_residual_text += not result.residual_text
        changed += result.changed
        stage_seconds.update(result.timings)
        if result.residual:
            residuals.append({"file": name, "boxes": [b.to_dict() for b in result.residual]})
    count = len(images)
    return {
        "images": count,
        "changed": changed,
        "share_without_residual_detection": no_residual / count,
        "share_without_residual_ocr_text": no_residual_text / count,
        "outside_mask_unchanged": f"{preserved}/{count}",
        "mean_seconds_per_stage": {stage: seconds / count for stage, seconds in sorted(stage_seconds.items())},
        "residuals": residuals,
    }


def _clean_one(arguments: tuple[np.ndarray, CleanupConfig]) -> float:
    pixels, config = arguments
    started = time.perf_counter()
    clean_image(pixels, config)
    return time.perf_counter() - started


def throughput(images: list[np.ndarray], config: CleanupConfig, repeats: int, workers: int) -> dict[str, Any]:
    """Images per second, end to end, over ``repeats`` passes (after one warm-up image)."""
    stages = build_stages(config)
    clean_image(images[0], config, stages=stages)
    jobs = [img for _ in range(repeats) for img in images]
    started = time.perf_counter()
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_clean_one, [(img, config) for img in jobs]))
    else:
        for img in jobs:
            clean_image(img, config, stages=stages)
    elapsed = time.perf_counter() - started
    return {"images": len(jobs), "seconds": elapsed, "images_per_second": len(jobs) / elapsed, "workers": workers}


# ---------------------------------------------------------------------------------------------- models


def model_path_report(images: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    """Clean ``--model-images`` images with SAM + SD inpainting and time each stage."""
    from cleanup.detect import make_detector
    from cleanup.inpaint import StableDiffusionInpainter
    from cleanup.segment import SamSegmenter, write_tiny_sam_checkpoint
    from generation.devices import select_device
    from generation.tiny_models import build_random_stable_diffusion, build_tiny_stable_diffusion

    choice = select_device(args.device)
    temporary = Path(tempfile.mkdtemp(prefix="cleanup-eval-"))
    if args.full_size_random:
        variant = "full size, random weights (SAM ViT-H, SD-2-inpainting architecture)"
        segmenter = SamSegmenter(model_type="vit_h", random_weights=True, device=args.device)
        sd_dir = CACHE_DIR / "sd2-inpainting-random"
        if not (sd_dir / "model_index.json").is_file():
            build_random_stable_diffusion(sd_dir, inpainting=True)
        size = 512
    elif args.sam_checkpoint or args.sd_model:
        if not (args.sam_checkpoint and args.sd_model):
            raise SystemExit("--sam-checkpoint and --sd-model go together.")
        variant = f"checkpoints {args.sam_checkpoint} and {args.sd_model}"
        segmenter = SamSegmenter(checkpoint=str(args.sam_checkpoint), device=args.device)
        sd_dir, size = args.sd_model, 512
    else:
        variant = "tiny offline test models (SAM 'tiny', SD with 64 px images)"
        segmenter = SamSegmenter(checkpoint=str(write_tiny_sam_checkpoint(temporary / "sam.pth")), device=args.device)
        sd_dir = build_tiny_stable_diffusion(temporary / "sd", seed=0, inpainting=True, sample_size=8)
        size = 64
    inpainter = StableDiffusionInpainter(
        model_path=str(sd_dir), steps=args.steps, size=size, device=args.device, dtype=args.dtype
    )
    detector = make_detector("xray")
    config = CleanupConfig(verify=False, device=args.device)
    chosen = sorted(name for name, pixels in images.items() if pixels.shape == (1024, 1024))[: args.model_images]
    started = time.perf_counter()
    segmenter.predictor()
    inpainter.pipeline()
    load_seconds = time.perf_counter() - started
    rows, preserved = [], 0
    for name in chosen:
        pixels = images[name]
        result = clean_image(pixels, config, stages=(detector, segmenter, inpainter))
        outside = result.mask == 0
        preserved += bool(np.array_equal(result.cleaned[outside], pixels[outside]))
        rows.append({"file": name, "boxes": len(result.boxes), **result.timings})
    per_image = [sum(v for k, v in row.items() if k in ("detect", "segment", "inpaint")) for row in rows]
    return {
        "variant": variant,
        "device": choice.name,
        "dtype": choice.dtype if args.dtype == "auto" else args.dtype,
        "steps": args.steps,
        "model_size": size,
        "load_seconds": load_seconds,
        "images": len(rows),
        "outside_mask_unchanged": f"{preserved}/{len(rows)}",
        "mean_seconds": {
            stage: float(np.mean([row.get(stage, 0.0) for row in rows])) for stage in ("detect", "segment", "inpaint")
        },
        "images_per_second": len(rows) / sum(per_image) if per_image else None,
    }


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder with MANIFEST.csv and the images")
    parser.add_argument("--ground-truth", type=Path, default=GROUND_TRUTH)
    parser.add_argument("--only", choices=("detection", "rendered", "cleanup", "throughput", "models"), action="append")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendered scenes")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the 1024 px images for throughput")
    parser.add_argument("--workers", type=int, default=1, help="processes for the throughput measurement")
    parser.add_argument("--device", default="auto", help="device of the model path: auto, cpu, cuda[:n], xpu, mps")
    parser.add_argument("--dtype", default="auto", help="dtype of the SD pipeline: auto, float32, float16, bfloat16")
    parser.add_argument("--steps", type=int, default=2, help="inpainting steps for the model path (real use: 50)")
    parser.add_argument("--model-images", type=int, default=3, help="1024 px images to clean on the model path")
    parser.add_argument("--full-size-random", action="store_true", help="SAM ViT-H + SD-2-inpainting, random")
    parser.add_argument("--sam-checkpoint", type=Path, help="a released sam_vit_*.pth")
    parser.add_argument("--sd-model", type=Path, help="a local stable-diffusion-2-inpainting folder")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--verbose", action="store_true", help="list every miss, false positive and residual")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    parts = args.only or ["detection", "rendered", "cleanup", "throughput", "models"]
    truth = load_ground_truth(args.ground_truth)
    images = load_images(args.data, sorted(truth))
    import cv2
    import torch

    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "torch": torch.__version__,
        },
    }
    detector = make_detector("xray")
    if "detection" in parts:
        report["detection"] = detection_report(images, truth, detector, args.verbose)
        for key, values in report["detection"]["subsets"].items():
            print(
                f"detection {key:9s} recall {values['recall']:.3f} ({values['found']}/{values['annotated']})  "
                f"precision {values['precision']:.3f} ({values['correct']}/{values['detections']})"
            )
        print("recall by label", {k: round(v, 3) for k, v in report["detection"]["recall_by_label"].items()})
    if "rendered" in parts:
        report["rendered"] = rendered_report(images, truth, detector, args.seed)
        rendered = report["rendered"]
        print(
            f"rendered  {rendered['scenes']} scenes, {rendered['artifacts']} artifacts: recall "
            f"{rendered['recall']:.3f} precision {rendered['precision']:.3f}  by kind "
            f"{ {k: round(v, 3) for k, v in rendered['recall_by_kind'].items()} }"
        )
    if "cleanup" in parts:
        report["cleanup"] = cleanup_report(images, CleanupConfig())
        cleaned = report["cleanup"]
        print(
            f"cleanup   no residual detection {cleaned['share_without_residual_detection']:.3f}, no residual "
            f"OCR text {cleaned['share_without_residual_ocr_text']:.3f}, outside mask unchanged "
            f"{cleaned['outside_mask_unchanged']}, s/stage {cleaned['mean_seconds_per_stage']}"
        )
        if args.verbose:
            for residual in cleaned["residuals"]:
                print(f"  residual {residual['file']}: {residual['boxes']}")
    if "throughput" in parts:
        at_1024 = [pixels for pixels in images.values() if pixels.shape == (1024, 1024)]
        report["throughput"] = {
            "classical_with_verification": throughput(at_1024, CleanupConfig(), args.repeats, args.workers),
            "classical_without_verification": throughput(
                at_1024, CleanupConfig(verify=False), args.repeats, args.workers
            ),
        }
        for key, values in report["throughput"].items():
            print(
                f"throughput {key}: {values['images_per_second']:.2f} images/s "
                f"({values['images']} images of 1024 px, {values['workers']} worker(s))"
            )
    if "models" in parts:
        report["models"] = model_path_report(images, args)
        print(f"models    {report['models']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
