"""Throughput of synthetic chest X-ray generation: plain diffusers against this project's `load_generator` path.

Both run the full-size Stable Diffusion 2.1-base architecture (UNet 866 M parameters, OpenCLIP-ViT/H text encoder,
KL-VAE; random weights, built once and cached under var/benchmarks/, or real weights with --model-dir) with a
rank-4 LoRA on the UNet attention projections, at the reference settings: 512x512, 75 PNDM steps, guidance 4.

(a) baseline: `StableDiffusionPipeline` in float16 (float32 on a CPU), LoRA loaded with `load_lora_weights` and
    left unfused, one image per call, diffusers' defaults otherwise;
(b) project: `generation.pipeline.load_generator` (bfloat16 where supported, SDPA with fused QKV, LoRA fused,
    channels-last, a batch sized to free memory, classifier-free guidance in the same UNet call), measured eagerly
    and, on a GPU, again with the UNet compiled by torch.compile.

One UNet evaluation with guidance costs 1.61 TFLOP at 512x512 and a VAE decode 2.51 TFLOP (counted here with
torch's FlopCounterMode on the meta device), so an image costs 123 TFLOP: about 6.4 images/s at an H100's
~790 TFLOP/s of dense bfloat16. The goal on one H100 is at least 3 images/s and at least 3x the baseline.

    python benchmarks/generation.py                    # GPU: reference settings; CPU: 256 px, 4 steps
    python benchmarks/generation.py --size 256 --steps 4 --batch 2
    python benchmarks/generation.py --tiny             # the tiny test model instead of the full architecture
    python benchmarks/generation.py --json out.json    # also write the results as JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from generation.devices import (  # noqa: E402
    empty_cache,
    peak_memory_bytes,
    reset_peak_memory,
    select_device,
    synchronize,
)
from generation.pipeline import GenerationSettings, clear_pipeline_cache, library_versions, load_generator  # noqa: E402
from generation.tiny_models import (  # noqa: E402
    build_random_stable_diffusion,
    build_tiny_lora,
    build_tiny_stable_diffusion,
)

PROMPT = "view_position = PA. modality = CR. small right pleural effusion."
CACHE_DIR = REPO_ROOT / "var" / "benchmarks"
H100_DENSE_BF16_TFLOPS = 790.0


def model_and_adapter(args: argparse.Namespace) -> tuple[Path, Path | None]:
    if args.model_dir is not None:
        return args.model_dir, args.adapter_dir
    name = "tiny-sd" if args.tiny else "sd21-base-random"
    model_dir = CACHE_DIR / name
    if not (model_dir / "model_index.json").is_file():
        print(f"building {name} in {model_dir} ...", flush=True)
        started = time.perf_counter()
        if args.tiny:
            build_tiny_stable_diffusion(model_dir)
        else:
            build_random_stable_diffusion(model_dir)
        print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    adapter_dir = model_dir.with_name(f"{name}-lora-r4")
    if not (adapter_dir / "pytorch_lora_weights.safetensors").is_file():
        build_tiny_lora(model_dir, adapter_dir, format="peft", rank=4)
    return model_dir, adapter_dir


def flops_per_image(model_dir: Path, size: int, steps: int, guidance: float) -> float:
    """FLOPs of one image: `steps` UNet evaluations (batch 2 with guidance) and one VAE decode, counted by
    FlopCounterMode on the meta device (no memory, no time). The text encoder (~0.1 TFLOP) is left out."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    unet_config = UNet2DConditionModel.load_config(model_dir / "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model_dir / "vae"))
        latent = size // 2 ** (len(vae.config.block_out_channels) - 1)
        samples = 2 if guidance > 1 else 1
        with FlopCounterMode(display=False) as unet_counter:
            unet(
                torch.zeros(samples, 4, latent, latent),
                torch.tensor([500] * samples),
                encoder_hidden_states=torch.zeros(samples, 77, unet_config["cross_attention_dim"]),
            )
        with FlopCounterMode(display=False) as vae_counter:
            vae.decode(torch.zeros(1, 4, latent, latent))
    return steps * unet_counter.get_total_flops() + vae_counter.get_total_flops()


def gib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**30, 2)


def measure_baseline(model_dir: Path, adapter_dir: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    """Plain diffusers: one image per call, LoRA loaded but not fused, default attention processors."""
    import torch
    from diffusers import StableDiffusionPipeline

    device = args.device_choice
    dtype = args.baseline_dtype or ("float32" if device.kind == "cpu" else "float16")
    pipeline = StableDiffusionPipeline.from_pretrained(
        model_dir, torch_dtype=getattr(torch, dtype), safety_checker=None, requires_safety_checker=False
    ).to(device.device)
    if adapter_dir is not None:
        pipeline.load_lora_weights(adapter_dir)
    pipeline.set_progress_bar_config(disable=True)

    def one_image(seed: int, steps: int) -> None:
        pipeline(
            PROMPT,
            height=args.size,
            width=args.size,
            num_inference_steps=steps,
            guidance_scale=args.guidance,
            generator=torch.Generator(device.device).manual_seed(seed),
        )

    one_image(0, 1)  # warm-up: kernels, cuDNN plans and allocator pools for these shapes
    synchronize(device.device)
    reset_peak_memory(device.device)
    started = time.perf_counter()
    for seed in range(args.baseline_images):
        one_image(seed, args.steps)
    synchronize(device.device)
    seconds = time.perf_counter() - started
    result = {
        "path": "baseline: diffusers StableDiffusionPipeline, unfused LoRA",
        "dtype": dtype,
        "batch": 1,
        "images": args.baseline_images,
        "seconds": round(seconds, 2),
        "images_per_s": args.baseline_images / seconds,
        "peak_memory_gib": gib(peak_memory_bytes(device.device)),
    }
    return result


def measure_project(
    model_dir: Path, adapter_dir: Path | None, args: argparse.Namespace, compile_mode: bool | str
) -> dict[str, Any]:
    """This project's path, exactly as a worker runs it: load_generator + ImageGenerator.generate."""
    import torch

    device = args.device_choice
    started = time.perf_counter()
    generator = load_generator(model_dir, adapter_dir, device=device.device, dtype=args.dtype, compile=compile_mode)
    load_seconds = time.perf_counter() - started
    synchronize(device.device)
    resident = torch.cuda.memory_allocated(device.device) if device.kind == "cuda" else None
    settings = GenerationSettings(
        width=args.size, height=args.size, steps=args.steps, guidance_scale=args.guidance, batch_size=args.batch
    )
    batch = generator.batch_size_for(settings)
    warmup_settings = GenerationSettings(**{**vars(settings), "steps": 1, "batch_size": batch})
    started = time.perf_counter()
    generator.generate([PROMPT] * batch, list(range(batch)), warmup_settings)  # compiles, when compiling
    warmup_seconds = time.perf_counter() - started
    images = max(args.images, batch)
    images -= images % batch  # whole batches only, so every call runs at the measured batch size
    synchronize(device.device)
    reset_peak_memory(device.device)
    started = time.perf_counter()
    results = generator.generate([PROMPT] * images, list(range(images)), settings)
    synchronize(device.device)
    seconds = time.perf_counter() - started
    peak = peak_memory_bytes(device.device)
    used_batch = results[-1].provenance["batch_size"]
    result = {
        "path": "project: load_generator" + (f" (torch.compile {generator.compiled})" if generator.compiled else ""),
        "dtype": device.dtype if args.dtype == "auto" else args.dtype,
        "batch": used_batch,
        "images": images,
        "seconds": round(seconds, 2),
        "images_per_s": images / seconds,
        "peak_memory_gib": gib(peak),
        "load_seconds": round(load_seconds, 1),
        "warmup_seconds": round(warmup_seconds, 1),
    }
    if resident is not None and peak is not None:
        # Checks the batch-size heuristic in generation.devices against what a batch really took.
        result["measured_gib_per_image"] = round((peak - resident) / used_batch / 2**30, 3)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, help="image size in pixels (GPU default 512, CPU default 256)")
    parser.add_argument("--steps", type=int, help="denoising steps (GPU default 75, CPU default 4)")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--batch", type=int, help="project batch size (default: fitted to free memory)")
    parser.add_argument("--images", type=int, help="images for the project path (GPU 128, CPU 2)")
    parser.add_argument("--baseline-images", type=int, help="images for the baseline (GPU 8, CPU 2)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="project dtype (default: bf16/fp16 by device)")
    parser.add_argument("--baseline-dtype", help="baseline dtype (default float16, float32 on CPU)")
    parser.add_argument(
        "--compile-mode", default=None, help="torch.compile mode (GPU default max-autotune-no-cudagraphs)"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled measurement")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="use the tiny test model")
    parser.add_argument("--model-dir", type=Path, help="a real SD 2.1-base folder instead of random weights")
    parser.add_argument("--adapter-dir", type=Path, help="a LoRA adapter for --model-dir")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.device_choice = select_device(args.device, args.dtype)
    on_gpu = args.device_choice.kind in ("cuda", "xpu")
    args.size = args.size or (512 if on_gpu else 256)
    args.steps = args.steps or (75 if on_gpu else 4)
    args.images = args.images or (128 if on_gpu else 2)
    args.baseline_images = args.baseline_images or (8 if on_gpu else 2)
    skip_compile = args.no_compile or (not on_gpu and args.compile_mode is None)
    args.compile = None if skip_compile else (args.compile_mode or True)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:

    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    device = args.device_choice
    model_dir, adapter_dir = model_and_adapter(args)
    flops = flops_per_image(model_dir, args.size, args.steps, args.guidance)
    report: dict[str, Any] = {
        "device": device.name,
        "versions": library_versions(),
        "model": str(model_dir),
        "adapter": str(adapter_dir) if adapter_dir else None,
        "size": args.size,
        "steps": args.steps,
        "guidance": args.guidance,
        "tflop_per_image": float(f"{flops / 1e12:.4g}"),
        "runs": [],
    }
    print(
        f"{device.name}; torch {report['versions']['torch']}, diffusers {report['versions']['diffusers']}; "
        f"{args.size}x{args.size}, {args.steps} steps, guidance {args.guidance:g}; "
        f"{flops / 1e12:.4g} TFLOP per image",
        flush=True,
    )
    phases = [] if args.skip_baseline else [("baseline", None)]
    phases.append(("project", False))
    if args.compile:
        phases.append(("project", args.compile))
    for phase, compile_mode in phases:
        try:
            if phase == "baseline":
                run = measure_baseline(model_dir, adapter_dir, args)
            else:
                run = measure_project(model_dir, adapter_dir, args, compile_mode)
        except Exception as error:  # report what ran; a failed compile must not hide the eager numbers
            print(f"  {phase} (compile={compile_mode}) failed: {type(error).__name__}: {error}", flush=True)
            continue
        finally:
            # The next phase gets the device's memory back: no pipeline outlives its measurement.
            clear_pipeline_cache()
            gc.collect()
            empty_cache(device.device)
        run["achieved_tflops"] = float(f"{run['images_per_s'] * flops / 1e12:.3g}")
        report["runs"].append(run)
        print(
            f"  {run['path']}: {run['dtype']}, batch {run['batch']}, {run['images']} images in "
            f"{run['seconds']} s = {run['images_per_s']:.3f} images/s ({run['achieved_tflops']} TFLOP/s), "
            f"peak memory {run['peak_memory_gib']} GiB"
            + (f", {run['measured_gib_per_image']} GiB per image" if "measured_gib_per_image" in run else "")
            + (f"; load {run['load_seconds']} s, warm-up {run['warmup_seconds']} s" if "load_seconds" in run else ""),
            flush=True,
        )
    baseline = next((run for run in report["runs"] if run["path"].startswith("baseline")), None)
    best = max(
        (run for run in report["runs"] if run["path"].startswith("project")),
        key=lambda run: run["images_per_s"],
        default=None,
    )
    if baseline and best:
        report["speedup"] = round(best["images_per_s"] / baseline["images_per_s"], 2)
        print(f"  speedup of the best project run over the baseline: {report['speedup']}x", flush=True)
    if best and "H100" in device.name and (args.size, args.steps) == (512, 75):
        met = best["images_per_s"] >= 3 and report.get("speedup", 0) >= 3
        print(f"  H100 goal (>= 3 images/s and >= 3x baseline): {'met' if met else 'NOT met'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
