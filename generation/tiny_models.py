"""Tiny, randomly initialised Stable Diffusion 2.1-base look-alikes for tests and the demo.

`build_tiny_stable_diffusion` writes a model folder with exactly the layout of
stabilityai/stable-diffusion-2-1-base (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/),
built from the same component classes, only narrow: it loads with the same code as the real model and
generates a 64x64 image on a CPU in a fraction of a second. As in SD, the VAE downsamples by 8, so image
sizes, latent sizes and inpainting masks relate exactly as they do for the real model. `build_tiny_lora`
writes a LoRA adapter for such a model in the current diffusers/peft layout or in the older
attention-processor layout, with non-zero weights so that it visibly changes the output.

No weights are downloaded: everything, the tokenizer included, is built offline from a seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

AdapterFormatName = Literal["peft", "legacy_attn_procs"]

# The UNet attention projections the reference LoRA adapts (rank 4 in the reference setup).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")

TINY_TEXT_HIDDEN_SIZE = 32

# Scheduler configuration of stabilityai/stable-diffusion-2-1-base (scheduler/scheduler_config.json).
SD21_BASE_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of CLIP's byte-level BPE, in CLIP's order ('!' is id 0)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in characters), strict=True))


def write_tiny_clip_tokenizer(directory: Path) -> int:
    """Write a byte-level CLIP tokenizer (vocab.json, merges.txt) with no merges; returns the vocabulary size.

    Every word is spelt out in single-byte tokens, which is enough for a randomly initialised text encoder:
    prompts still map to distinct, deterministic token sequences. Layout and special tokens follow SD 2.x (pad
    token '!')."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    byte_characters = list(_bytes_to_unicode().values())
    tokens = byte_characters + [character + "</w>" for character in byte_characters]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # Round-trip through transformers so the folder also holds the tokenizer_config.json it expects.
    tokenizer = CLIPTokenizer.from_pretrained(directory, pad_token="!", model_max_length=77)
    tokenizer.save_pretrained(directory)
    return len(vocab)


def _tiny_unet(seed: int, *, inpainting: bool, sample_size: int):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    # SD 2.1-base's block pattern (cross-attention blocks, then a plain one; linear projections), two levels
    # deep.
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        cross_attention_dim=TINY_TEXT_HIDDEN_SIZE,
        use_linear_projection=True,
        norm_num_groups=32,
    )


def _tiny_vae(seed: int, *, sample_size: int):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    # Four resolution levels, as in SD: a downsampling factor of 8 between image and latent.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=sample_size * 8,
    )


def _tiny_text_encoder(seed: int, tokenizer):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_HIDDEN_SIZE,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TINY_TEXT_HIDDEN_SIZE,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_tiny_stable_diffusion(path: Path, *, seed: int = 0, inpainting: bool = False, sample_size: int = 32) -> Path:
    """Write a tiny SD 2.1-base-layout model folder at `path` and return it.

    `sample_size` is the UNet's latent size (as in the UNet config); the model's native image size is 8x that,
    but any multiple of 8 can be asked for. With `inpainting=True` the UNet takes 9 input channels (latents,
    mask, masked-image latents) and model_index.json names StableDiffusionInpaintPipeline, like
    stabilityai/stable-diffusion-2-inpainting. The same seed always writes the same weights."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    path = Path(path)
    write_tiny_clip_tokenizer(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
    unet = _tiny_unet(seed, inpainting=inpainting, sample_size=sample_size)
    vae = _tiny_vae(seed + 1, sample_size=sample_size)
    text_encoder = _tiny_text_encoder(seed + 2, tokenizer)
    scheduler = PNDMScheduler(**SD21_BASE_SCHEDULER_CONFIG)

    pipeline_class = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipeline = pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(path, safe_serialization=True)
    return path


def _lora_state_dict_peft(model_dir: Path, rank: int, seed: int) -> dict[str, object]:
    """Random LoRA factors for every UNet attention projection, keyed in the diffusers/peft layout."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    generator = torch.Generator().manual_seed(seed)
    state_dict: dict[str, object] = {}
    for name, module in unet.named_modules():
        if not name.endswith(LORA_TARGET_MODULES) or not isinstance(module, torch.nn.Linear):
            continue
        # Both factors non-zero (peft initialises B to zero, which would leave the model unchanged); the scale
        # keeps the update a visible but modest fraction of the base weights.
        down = torch.randn(rank, module.in_features, generator=generator) / module.in_features**0.5
        up = torch.randn(module.out_features, rank, generator=generator) * 0.5 / rank**0.5
        state_dict[f"unet.{name}.lora_A.weight"] = down.contiguous()
        state_dict[f"unet.{name}.lora_B.weight"] = up.contiguous()
    return state_dict


def build_tiny_lora(
    model_dir: Path,
    out_dir: Path,
    *,
    format: AdapterFormatName = "peft",
    rank: int = 4,
    seed: int = 0,
) -> Path:
    """Write a rank-`rank` LoRA adapter on the UNet attention projections of the model at `model_dir`.

    format="peft" writes `pytorch_lora_weights.safetensors` with `unet.<module>.lora_A.weight` keys, as
    `StableDiffusionPipeline.save_lora_weights` does today; format="legacy_attn_procs" writes the same weights
    as `pytorch_lora_weights.bin` with `<module minus projection>.processor.to_q_lora.down.weight` keys, as
    `unet.save_attn_procs` did in diffusers <= 0.2x. The same seed gives the same weights in both formats."""
    import torch
    from safetensors.torch import save_file

    from generation.lora import peft_to_legacy_keys

    if format not in ("peft", "legacy_attn_procs"):
        raise ValueError(f"Unknown adapter format {format!r}; expected 'peft' or 'legacy_attn_procs'.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dict = _lora_state_dict_peft(Path(model_dir), rank, seed)
    if format == "peft":
        target = out_dir / "pytorch_lora_weights.safetensors"
        save_file(state_dict, str(target))
    else:
        target = out_dir / "pytorch_lora_weights.bin"
        torch.save(peft_to_legacy_keys(state_dict), target)
    return out_dir


# stabilityai/stable-diffusion-2-1-base, unet/config.json
SD21_BASE_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "act_fn": "silu",
}
# stabilityai/stable-diffusion-2-1-base, vae/config.json
SD21_BASE_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
}
# stabilityai/stable-diffusion-2-1-base, text_encoder/config.json (OpenCLIP ViT-H/14 text tower, last layer dropped)
SD21_BASE_TEXT_ENCODER = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "projection_dim": 512,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}


def build_random_stable_diffusion(path: Path, *, seed: int = 0, inpainting: bool = False) -> Path:
    """Write the full-size SD 2.1-base architecture (or, with `inpainting`, stable-diffusion-2-inpainting: the same
    with a 9-channel UNet input) with random weights stored as float16, and the tiny offline tokenizer (the real
    CLIP vocabulary cannot be downloaded here; token ids stay within the 49408-row embedding). For benchmarks:
    the compute and memory of the real models, offline."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_tiny_clip_tokenizer(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
    init_device = "cuda" if torch.cuda.is_available() else "cpu"  # initialising 1.3 G parameters is faster there
    with torch.device(init_device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**{**SD21_BASE_UNET, "in_channels": 9 if inpainting else 4})
        vae = AutoencoderKL(**SD21_BASE_VAE)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                **SD21_BASE_TEXT_ENCODER,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    pipeline_class = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipeline = pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD21_BASE_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.to(torch.float16).save_pretrained(path, safe_serialization=True)
    return path
