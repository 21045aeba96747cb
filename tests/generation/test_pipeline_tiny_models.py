"""The tiny model builder writes SD 2.1-base-layout folders that diffusers loads and runs, inpainting too."""

import json
from pathlib import Path

import numpy as np
import pytest

from generation.hashing import model_dir_sha256
from generation.lora import check_adapter_dir
from generation.tiny_models import SD21_BASE_SCHEDULER_CONFIG, build_tiny_stable_diffusion

pytestmark = pytest.mark.ml

SD21_BASE_FILES = (
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
)


def test_tiny_model_has_the_sd21_base_layout(tiny_model_dir: Path) -> None:
    for relative in SD21_BASE_FILES:
        assert (tiny_model_dir / relative).is_file(), relative
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["scheduler"] == ["diffusers", "PNDMScheduler"]
    assert index["safety_checker"] == [None, None]


def test_tiny_model_scheduler_is_the_sd21_base_pndm_configuration(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "PNDMScheduler"
    for name, value in SD21_BASE_SCHEDULER_CONFIG.items():
        assert config[name] == value, name
    # The values quoted in SD 2.1-base's scheduler_config.json.
    assert (config["beta_start"], config["beta_end"], config["steps_offset"]) == (0.00085, 0.012, 1)


def test_tiny_model_components_fit_together(tiny_model_dir: Path) -> None:
    unet = json.loads((tiny_model_dir / "unet" / "config.json").read_text())
    text = json.loads((tiny_model_dir / "text_encoder" / "config.json").read_text())
    vae = json.loads((tiny_model_dir / "vae" / "config.json").read_text())
    assert unet["in_channels"] == 4
    assert unet["use_linear_projection"] is True
    assert unet["cross_attention_dim"] == text["hidden_size"]
    # Four VAE levels give SD's factor of 8 between image and latent.
    assert 2 ** (len(vae["block_out_channels"]) - 1) == 8


def test_tiny_tokenizer_pads_like_sd2_and_keeps_prompts_apart(tiny_model_dir: Path) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")
    assert tokenizer.pad_token == "!" and tokenizer.pad_token_id == 0
    assert tokenizer.model_max_length == 77
    first = tokenizer("view_position = PA. modality = CR. No findings.").input_ids
    second = tokenizer("view_position = PA. modality = CR. small right pleural effusion").input_ids
    assert first[0] == tokenizer.bos_token_id and first[-1] == tokenizer.eos_token_id
    assert first != second


def test_same_seed_writes_the_same_weights_and_another_seed_different_ones(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    again = build_tiny_stable_diffusion(tmp_path / "again", seed=0)
    other = build_tiny_stable_diffusion(tmp_path / "other", seed=1)
    assert model_dir_sha256(again) == model_dir_sha256(tiny_model_dir)
    assert model_dir_sha256(other) != model_dir_sha256(tiny_model_dir)


def test_tiny_inpainting_model_inpaints_a_64px_image(tiny_inpainting_model_dir: Path) -> None:
    import torch
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    index = json.loads((tiny_inpainting_model_dir / "model_index.json").read_text())
    unet = json.loads((tiny_inpainting_model_dir / "unet" / "config.json").read_text())
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"
    assert unet["in_channels"] == 9  # noisy latents (4) + mask (1) + masked-image latents (4)

    pipeline = StableDiffusionInpaintPipeline.from_pretrained(tiny_inpainting_model_dir)
    pipeline.set_progress_bar_config(disable=True)
    image = Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    result = pipeline(
        "remove text",
        image=image,
        mask_image=Image.fromarray(mask),
        height=64,
        width=64,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert result.shape == (1, 64, 64, 3)
    assert np.isfinite(result).all()


def test_both_adapter_formats_hold_the_same_weights(tiny_peft_adapter_dir: Path, tiny_legacy_adapter_dir: Path) -> None:
    peft = check_adapter_dir(tiny_peft_adapter_dir)
    legacy = check_adapter_dir(tiny_legacy_adapter_dir)
    assert (peft.format, legacy.format) == ("peft", "legacy_attn_procs")
    assert peft.weights_file.name == "pytorch_lora_weights.safetensors"
    assert legacy.weights_file.name == "pytorch_lora_weights.bin"
    assert peft.tensors == legacy.tensors
    assert peft.rank == legacy.rank == 4
    # Tiny UNet: 4 transformer blocks (1 down, 1 mid, 2 up, as up blocks have one layer more) x 2 attentions
    # (self, cross) x 4 projections.
    assert peft.module_count == 32
