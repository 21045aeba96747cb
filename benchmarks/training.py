"""Training throughput of LoRA fine-tuning: a loop like diffusers' example script against `training.loop.train_lora`.

Both train a rank-4 LoRA on the UNet attention projections of the full-size Stable Diffusion 2.1-base architecture
(random weights, built once under var/benchmarks/ by benchmarks/generation.py's helper, or real weights with
--model-dir) at 512x512, batch 5, on synthetic chest phantoms (`imaging.phantom.chest_phantom`), in the same run:

(a) baseline, as diffusers' examples/text_to_image/train_text_to_image_lora.py runs it: every step encodes its
    images with the VAE and its prompts with the text encoder (no cache), float32 weights under fp16 autocast
    with a GradScaler (plain float32 on a CPU), default memory format, AdamW, gradient clipping;
(b) project: `train_lora` itself (VAE latents and text embeddings cached once per run, the base in bf16 where
    supported with float32 LoRA factors, SDPA attention, channels-last on GPUs), eagerly and, with --compile,
    again with the UNet compiled.

Images per second count optimizer steps after the warm-up steps only; the project's one-off work (loading,
hashing the model, filling the latent cache) is reported separately as set-up. On a machine without a GPU the
script runs the tiny test model (generation.tiny_models) at 64 px instead, and says so: those figures measure
per-step overhead, not GPU throughput.

    python benchmarks/training.py                         # GPU: full architecture, 512 px; CPU: tiny model, 64 px
    python benchmarks/training.py --compile               # also the compiled UNet (GPU)
    python benchmarks/training.py --tiny --threads 1      # the tiny model anywhere
    python benchmarks/training.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # before benchmarks/, whose training.py would shadow the training package

from benchmarks.generation import gib, model_and_adapter  # noqa: E402
from generation.devices import (  # noqa: E402
    empty_cache,
    peak_memory_bytes,
    reset_peak_memory,
    select_device,
    synchronize,
)
from generation.pipeline import library_versions  # noqa: E402
from imaging.phantom import chest_phantom  # noqa: E402
from training.loop import TrainingExample, TrainingSettings, prepare_pixels, train_lora  # noqa: E402

PROMPTS = (
    "view_position = PA. modality = CR. small right pleural effusion.",
    "view_position = AP. modality = DX. no acute cardiopulmonary abnormality.",
)


def make_examples(count: int, size: int) -> list[TrainingExample]:
    return [
        TrainingExample(key=f"phantom-{size}-{seed}", pixels=chest_phantom(seed, size=size), prompt=PROMPTS[seed % 2])
        for seed in range(count)
    ]


def measure_baseline(model_dir: Path, examples: list[TrainingExample], args: argparse.Namespace) -> dict[str, Any]:
    """The diffusers example's inner loop: VAE and text encoder every step, fp32 weights + fp16 autocast."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    device = args.device_choice
    on_gpu = device.kind != "cpu"
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder", torch_dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    noise_scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    for model in (unet, vae, text_encoder):
        model.to(device.device)
    parameters = [parameter for parameter in unet.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    scaler = torch.amp.GradScaler(device.kind, enabled=on_gpu)
    autocast = torch.autocast(device.kind, dtype=torch.float16, enabled=on_gpu)
    pixels = torch.from_numpy(np.stack([prepare_pixels(example.pixels, args.size) for example in examples]))
    unet.train()

    def one_step(step: int) -> float:
        rows = [(step * args.batch + offset) % len(examples) for offset in range(args.batch)]
        batch = pixels[rows].to(device.device)
        ids = tokenizer(
            [examples[row].prompt for row in rows],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device.device)
        with autocast:
            latents = vae.encode(batch).latent_dist.sample() * vae.config.scaling_factor
            hidden = text_encoder(ids, return_dict=False)[0]
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(rows),), device=device.device)
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            prediction = unet(noisy, timesteps, hidden, return_dict=False)[0]
        loss = F.mse_loss(prediction.float(), noise.float())
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())  # synchronises, as the example's per-step logging does

    reset_peak_memory(device.device)
    for step in range(args.warmup_steps):
        one_step(step)
    synchronize(device.device)
    started = time.perf_counter()
    for step in range(args.warmup_steps, args.warmup_steps + args.steps):
        one_step(step)
    synchronize(device.device)
    seconds = time.perf_counter() - started
    return {
        "path": "baseline: diffusers example loop (VAE + text encoder every step, fp32 weights, fp16 autocast)"
        if on_gpu
        else "baseline: diffusers example loop (VAE + text encoder every step, float32)",
        "images": args.steps * args.batch,
        "seconds": round(seconds, 2),
        "images_per_s": args.steps * args.batch / seconds,
        "peak_memory_gib": gib(peak_memory_bytes(device.device)),
    }


def measure_project(
    model_dir: Path, examples: list[TrainingExample], args: argparse.Namespace, compile_unet: bool
) -> dict[str, Any]:
    """train_lora as a worker runs it, timed from its own StepReports."""
    device = args.device_choice
    settings = replace(
        TrainingSettings(),
        resolution=args.size,
        batch_size=args.batch,
        max_steps=args.warmup_steps + args.steps,
        checkpoint_every=0,
        mixed_precision=args.mixed_precision,
        torch_compile=compile_unet,
    )
    reports = []
    reset_peak_memory(device.device)  # the whole run: the latent cache is filled on the device too
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train-bench-") as output_dir:
        result = train_lora(
            base_model_dir=model_dir,
            examples=examples,
            settings=settings,
            output_dir=Path(output_dir),
            device=device.device,
            progress=reports.append,
        )
    peak = peak_memory_bytes(device.device)
    # Each StepReport times its own step (examples / images_per_second); every step here is a full batch.
    durations = [args.batch / report.images_per_second for report in reports]
    warmup, measured = durations[: args.warmup_steps], durations[args.warmup_steps :]
    seconds = sum(measured)
    # Set-up: the call's wall time less its steps (loading, hashing the model, filling the caches, saving).
    setup_seconds = time.perf_counter() - started - sum(durations)
    return {
        "path": "project: train_lora" + (" (torch.compile)" if compile_unet else ""),
        "mixed_precision": result.metadata["mixed_precision"],
        "images": len(measured) * args.batch,
        "seconds": round(seconds, 2),
        "images_per_s": len(measured) * args.batch / seconds,
        "peak_memory_gib": gib(peak),
        "setup_seconds": round(setup_seconds, 1),
        "warmup_seconds": round(sum(warmup), 1),
        "final_loss": round(result.final_loss, 4),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, help="training resolution (GPU default 512, CPU default 64)")
    parser.add_argument("--batch", type=int, default=5, help="images per step (default 5, the reference run)")
    parser.add_argument("--steps", type=int, help="measured optimizer steps (GPU 20, CPU 10)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps before measuring (compilation, cuDNN)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mixed-precision", default="auto", help="project mode: auto, bf16, fp16 or no")
    parser.add_argument("--compile", action="store_true", help="also measure the project with torch.compile")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="use the tiny test model (the default without a GPU)")
    parser.add_argument("--model-dir", type=Path, help="a real SD 2.1-base folder instead of random weights")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.device_choice = select_device(args.device)
    on_gpu = args.device_choice.kind in ("cuda", "xpu")
    args.tiny = args.tiny or (not on_gpu and args.model_dir is None)
    args.adapter_dir = None
    args.size = args.size or (512 if on_gpu and not args.tiny else 64)
    args.steps = args.steps or (20 if on_gpu else 10)
    args.warmup_steps = max(1, args.warmup_steps)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    device = args.device_choice
    model_dir, _adapter = model_and_adapter(args)
    model = "tiny test model (generation.tiny_models)" if args.tiny else str(model_dir)
    examples = make_examples(args.batch * max(2, -(-10 // args.batch)), args.size)  # whole batches only
    report: dict[str, Any] = {
        "device": device.name,
        "threads": torch.get_num_threads(),
        "versions": library_versions(),
        "model": model,
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "runs": [],
    }
    print(
        f"{device.name}; torch {report['versions']['torch']}, diffusers {report['versions']['diffusers']}, "
        f"peft {report['versions']['peft']}; {model}; {args.size}x{args.size}, batch {args.batch}, "
        f"{args.steps} measured steps after {args.warmup_steps} warm-up",
        flush=True,
    )
    if args.tiny:
        print("  NOTE: the tiny model measures per-step overhead, not the throughput of SD 2.1-base", flush=True)
    phases: list[tuple[str, bool]] = [] if args.skip_baseline else [("baseline", False)]
    phases.append(("project", False))
    if args.compile:
        phases.append(("project", True))
    for phase, compile_unet in phases:
        try:
            if phase == "baseline":
                run = measure_baseline(model_dir, examples, args)
            else:
                run = measure_project(model_dir, examples, args, compile_unet)
        except Exception as error:  # report what ran; a failed compile must not hide the eager numbers
            print(f"  {phase} (compile={compile_unet}) failed: {type(error).__name__}: {error}", flush=True)
            continue
        finally:
            gc.collect()
            empty_cache(device.device)
        report["runs"].append(run)
        print(
            f"  {run['path']}: {run['images']} images in {run['seconds']} s = {run['images_per_s']:.3f} images/s, "
            f"peak memory {run['peak_memory_gib']} GiB"
            + (
                f" ({run['mixed_precision']}; set-up {run['setup_seconds']} s, warm-up {run['warmup_seconds']} s)"
                if "setup_seconds" in run
                else ""
            ),
            flush=True,
        )
    if device.kind == "cpu":
        print("  (CPU peak memory is the process's peak resident set so far, so it only grows run to run)")
    baseline = next((run for run in report["runs"] if run["path"].startswith("baseline")), None)
    best = max(
        (run for run in report["runs"] if run["path"].startswith("project")),
        key=lambda run: run["images_per_s"],
        default=None,
    )
    if baseline and best:
        report["speedup"] = round(best["images_per_s"] / baseline["images_per_s"], 2)
        print(f"  speedup of the best project run over the baseline: {report['speedup']}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
