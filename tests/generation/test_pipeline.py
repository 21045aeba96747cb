"""Generation with the tiny SD 2.1-base-layout model on the CPU: images, seeds, LoRA, schedulers, provenance."""

import json
from pathlib import Path

import numpy as np
import pytest

from generation import lora
from generation.hashing import model_dir_sha256
from generation.lora import AdapterError
from generation.pipeline import (
    GenerationError,
    GenerationSettings,
    ImageGenerator,
    ModelError,
    SettingsError,
    check_model_dir,
    clear_pipeline_cache,
    load_generator,
)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.ml

# Few steps at 64 px keep each call well under a second on a 2-core CPU.
SMALL = GenerationSettings(width=64, height=64, steps=6)
PROMPTS = [
    "view_position = PA. modality = CR. No findings.",
    "view_position = PA. modality = CR. small right pleural effusion.",
    "view_position = AP. modality = CR. Cardiomegaly.",
]
# Float32 CPU results of the same computation differ only by rounding (observed ~1e-6).
SAME = {"atol": 1e-4, "rtol": 0}


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path) -> ImageGenerator:
    return load_generator(tiny_model_dir, device="cpu")


def pixels(images) -> np.ndarray:
    return np.stack([image.pixels for image in images])


def test_generates_grayscale_images_of_the_requested_size(base: ImageGenerator) -> None:
    settings = GenerationSettings(width=64, height=96, steps=4, keep_rgb=True)
    (image,) = base.generate(PROMPTS[:1], [7], settings)
    assert image.pixels.shape == (96, 64) and image.pixels.dtype == np.float32
    assert 0 <= image.pixels.min() < image.pixels.max() <= 1
    assert image.rgb.shape == (96, 64, 3) and image.rgb.dtype == np.uint8
    # The grey value is the BT.601 luminance of the RGB output (up to the RGB's 8-bit rounding).
    luma = image.rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255
    np.testing.assert_allclose(image.pixels, luma, atol=1 / 255)
    assert (image.seed, image.prompt) == (7, PROMPTS[0]) and image.seconds > 0


def test_same_seed_gives_the_same_image_and_other_seeds_other_images(base: ImageGenerator) -> None:
    first = pixels(base.generate(PROMPTS[:1] * 2, [11, 12], SMALL))
    again = pixels(base.generate(PROMPTS[:1] * 2, [11, 12], SMALL))
    np.testing.assert_array_equal(first, again)  # bit for bit
    assert np.abs(first[0] - first[1]).mean() > 0.01


def test_an_image_does_not_depend_on_its_batch_or_position(base: ImageGenerator) -> None:
    batched = pixels(base.generate(PROMPTS, [1, 2, 3], GenerationSettings(**{**vars(SMALL), "batch_size": 3})))
    for index in range(3):
        alone = pixels(base.generate([PROMPTS[index]], [index + 1], GenerationSettings(**vars(SMALL))))
        np.testing.assert_allclose(alone[0], batched[index], **SAME)
    reordered = pixels(base.generate(PROMPTS[::-1], [3, 2, 1], SMALL))
    np.testing.assert_allclose(reordered[::-1], batched, **SAME)


def test_the_prompt_changes_the_image(base: ImageGenerator) -> None:
    images = pixels(base.generate(PROMPTS[:2], [5, 5], SMALL))
    assert np.abs(images[0] - images[1]).max() > 1e-3


def test_lora_changes_the_output_and_both_formats_give_the_same_image(
    tiny_model_dir: Path, tiny_peft_adapter_dir: Path, tiny_legacy_adapter_dir: Path, base: ImageGenerator
) -> None:
    with_peft = load_generator(tiny_model_dir, tiny_peft_adapter_dir, device="cpu")
    with_legacy = load_generator(tiny_model_dir, tiny_legacy_adapter_dir, device="cpu")
    plain = pixels(base.generate(PROMPTS[:2], [3, 4], SMALL))
    peft = pixels(with_peft.generate(PROMPTS[:2], [3, 4], SMALL))
    legacy = pixels(with_legacy.generate(PROMPTS[:2], [3, 4], SMALL))
    assert np.abs(peft - plain).max() > 1e-2  # a thousand times the rounding noise
    np.testing.assert_allclose(legacy, peft, **SAME)
    assert with_legacy.provenance["adapter"]["format"] == "legacy_attn_procs"
    assert with_peft.provenance["adapter"]["format"] == "peft"


def test_lora_alpha_from_the_adapter_metadata_is_applied(
    tiny_model_dir: Path, tiny_peft_adapter_dir: Path, tmp_path: Path
) -> None:
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tiny_peft_adapter_dir / "pytorch_lora_weights.safetensors"))
    # Saved the way diffusers' trainers do, with lora_alpha = 2 x rank in the header: peft scales by alpha / r = 2.
    StableDiffusionPipeline.save_lora_weights(
        tmp_path / "alpha8",
        unet_lora_layers={key.removeprefix("unet."): value for key, value in tensors.items()},
        unet_lora_adapter_metadata={"r": 4, "lora_alpha": 8, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]},
    )
    # The same update with the factor 2 folded into B and no metadata (alpha = rank, scale 1).
    (tmp_path / "doubled").mkdir()
    doubled = {key: 2 * value if ".lora_B." in key else value for key, value in tensors.items()}
    save_file(doubled, str(tmp_path / "doubled" / "pytorch_lora_weights.safetensors"))

    scaled = pixels(load_generator(tiny_model_dir, tmp_path / "alpha8", device="cpu").generate(PROMPTS[:1], [2], SMALL))
    folded = pixels(
        load_generator(tiny_model_dir, tmp_path / "doubled", device="cpu").generate(PROMPTS[:1], [2], SMALL)
    )
    plain = pixels(
        load_generator(tiny_model_dir, tiny_peft_adapter_dir, device="cpu").generate(PROMPTS[:1], [2], SMALL)
    )
    np.testing.assert_allclose(scaled, folded, **SAME)
    assert np.abs(scaled - plain).max() > 1e-2


def test_adapter_that_matches_nothing_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file(
        {"unet.input_blocks.1.1.proj_in.lora_A.weight": torch.ones(4, 32)},
        str(tmp_path / "pytorch_lora_weights.safetensors"),
    )
    with pytest.raises(AdapterError, match=r"pytorch_lora_weights.safetensors \(peft\) matches no layer"):
        load_generator(tiny_model_dir, tmp_path, device="cpu")


def test_stray_keys_within_the_tolerance_are_ignored_and_reported(
    tiny_model_dir: Path, tiny_peft_adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tiny_peft_adapter_dir / "pytorch_lora_weights.safetensors"))
    stray = "unet.mid_block.attentions.0.transformer_blocks.0.attn1.add_q_proj.lora_A.weight"
    tensors[stray] = torch.ones(4, 64)
    save_file(tensors, str(tmp_path / "pytorch_lora_weights.safetensors"))
    with pytest.raises(AdapterError, match="only partly matches"):  # 1 of 65 keys is above 1 %
        load_generator(tiny_model_dir, tmp_path, device="cpu")
    monkeypatch.setattr(lora, "UNMATCHED_TOLERANCE", 0.05)
    generator = load_generator(tiny_model_dir, tmp_path, device="cpu")
    assert generator.provenance["adapter"]["unmatched_keys_ignored"] == [stray]
    reference = load_generator(tiny_model_dir, tiny_peft_adapter_dir, device="cpu")
    np.testing.assert_allclose(
        pixels(generator.generate(PROMPTS[:1], [1], SMALL)),
        pixels(reference.generate(PROMPTS[:1], [1], SMALL)),
        **SAME,
    )


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("pndm", "PNDMScheduler"),
        ("ddim", "DDIMScheduler"),
        ("dpm++", "DPMSolverMultistepScheduler"),
        ("euler", "EulerDiscreteScheduler"),
        ("euler_a", "EulerAncestralDiscreteScheduler"),
        ("unipc", "UniPCMultistepScheduler"),
        ("lms", "LMSDiscreteScheduler"),
        ("heun", "HeunDiscreteScheduler"),
        ("ddpm", "DDPMScheduler"),
        ("deis", "DEISMultistepScheduler"),
        ("dpm++_karras", "DPMSolverMultistepScheduler"),
        ("kdpm2", "KDPM2DiscreteScheduler"),
        ("kdpm2_a", "KDPM2AncestralDiscreteScheduler"),
    ],
)
def test_schedulers_are_selectable_by_name(base: ImageGenerator, name: str, class_name: str) -> None:
    settings = GenerationSettings(width=64, height=64, steps=4, scheduler=name)
    (image,) = base.generate(PROMPTS[:1], [1], settings)
    assert image.provenance["scheduler"]["class"] == class_name
    assert image.provenance["scheduler"]["name"] == name
    # Derived from the model's own configuration, not the scheduler's defaults.
    assert image.provenance["scheduler"]["config"]["beta_end"] == 0.012
    assert np.isfinite(image.pixels).all()


def test_scheduler_choice_changes_the_image_and_the_default_is_the_models(base: ImageGenerator) -> None:
    settings = {"width": 64, "height": 64, "steps": 6}
    default = base.generate(PROMPTS[:1], [1], GenerationSettings(**settings))[0]
    ddim = base.generate(PROMPTS[:1], [1], GenerationSettings(**settings, scheduler="ddim"))[0]
    assert default.provenance["scheduler"]["class"] == "PNDMScheduler"
    assert np.abs(default.pixels - ddim.pixels).max() > 1e-3


def test_ancestral_sampling_is_also_reproducible_and_batch_independent(base: ImageGenerator) -> None:
    settings = GenerationSettings(width=64, height=64, steps=4, scheduler="euler_a", batch_size=2)
    batched = pixels(base.generate(PROMPTS[:2], [21, 22], settings))
    alone = pixels(base.generate(PROMPTS[1:2], [22], settings))
    np.testing.assert_allclose(alone[0], batched[1], **SAME)


def test_generator_scheduler_set_at_load_is_its_default(tiny_model_dir: Path) -> None:
    generator = load_generator(tiny_model_dir, device="cpu", scheduler="DDIM")
    (image,) = generator.generate(PROMPTS[:1], [1], GenerationSettings(width=64, height=64, steps=2))
    assert image.provenance["scheduler"]["class"] == "DDIMScheduler"
    # "default" still means the model folder's own scheduler.
    settings = GenerationSettings(width=64, height=64, steps=2, scheduler="default")
    (image,) = generator.generate(PROMPTS[:1], [1], settings)
    assert image.provenance["scheduler"]["class"] == "PNDMScheduler"
    with pytest.raises(SettingsError, match="Unknown scheduler 'warp'"):
        load_generator(tiny_model_dir, device="cpu", scheduler="warp")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 100}, "Width must be a multiple of 8, the VAE's downsampling factor (got 100; nearest are 96"),
        ({"height": 4096}, "Height must be from 64 to 2048 pixels (got 4096)"),
        ({"steps": 0}, "Steps must be a whole number from 1 to 500 (got 0)"),
        ({"steps": 7.5}, "Steps must be a whole number from 1 to 500 (got 7.5)"),
        ({"guidance_scale": -1}, "Guidance scale must be a number from 0 to 30 (got -1)"),
        ({"guidance_scale": float("nan")}, "Guidance scale must be a number from 0 to 30 (got nan)"),
        ({"scheduler": "warp"}, "Unknown scheduler 'warp'; choose one of default, pndm, ddim"),
        ({"batch_size": 0}, "Batch size must be empty (automatic) or 1 to 256 (got 0)"),
    ],
)
def test_settings_validation_names_the_problem(changes: dict, message: str) -> None:
    settings = GenerationSettings(**changes)
    assert message in settings.problems()[0]
    with pytest.raises(SettingsError):
        settings.validate()


def test_reference_defaults_are_valid_and_all_problems_are_listed() -> None:
    defaults = GenerationSettings()
    assert (defaults.steps, defaults.guidance_scale, defaults.width, defaults.height) == (75, 4.0, 512, 512)
    assert defaults.scheduler is None and defaults.problems() == []
    with pytest.raises(SettingsError) as raised:
        GenerationSettings(width=10, steps=1000).validate()
    assert len(raised.value.problems) == 2


def test_bad_prompts_and_seeds_are_refused_before_any_work(base: ImageGenerator) -> None:
    with pytest.raises(SettingsError, match="2 prompts but 1 seeds"):
        base.generate(PROMPTS[:2], [1], SMALL)
    with pytest.raises(SettingsError, match="Prompt 2 is empty"):
        base.generate(["a", "  "], [1, 2], SMALL)
    with pytest.raises(SettingsError, match="Seed -1 is not a whole number"):
        base.generate(["a"], [-1], SMALL)
    with pytest.raises(SettingsError, match="Seed True"):
        base.generate(["a"], [True], SMALL)


def test_provenance_is_complete_and_json_serialisable(tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> None:
    generator = load_generator(tiny_model_dir, tiny_peft_adapter_dir, device="cpu")
    settings = GenerationSettings(width=64, height=64, steps=3, negative_prompt="lateral view")
    (image,) = generator.generate(PROMPTS[:1], [42], settings)
    provenance = json.loads(json.dumps(image.provenance))
    assert provenance["base_model"] == {
        "path": str(tiny_model_dir.resolve()),
        "sha256": model_dir_sha256(tiny_model_dir),
        "pipeline": "StableDiffusionPipeline",
    }
    adapter = provenance["adapter"]
    assert adapter["format"] == "peft" and adapter["rank"] == 4 and adapter["fused"] is True
    assert adapter["sha256"] == lora.check_adapter_dir(tiny_peft_adapter_dir).sha256
    assert adapter["path"] == str(tiny_peft_adapter_dir.resolve())
    assert (provenance["prompt"], provenance["negative_prompt"], provenance["seed"]) == (
        PROMPTS[0],
        "lateral view",
        42,
    )
    assert provenance["scheduler"]["class"] == "PNDMScheduler"
    assert provenance["scheduler"]["config"]["steps_offset"] == 1
    assert (provenance["steps"], provenance["guidance_scale"]) == (3, 4.0)
    assert (provenance["width"], provenance["height"]) == (64, 64)
    assert provenance["dtype"] == "float32" and provenance["device"].startswith("cpu: ")
    for package in ("torch", "diffusers", "peft", "transformers"):
        assert provenance["versions"][package], package
    assert provenance["seconds"] > 0 and provenance["prompt_truncated"] is False


def test_a_prompt_past_77_tokens_is_marked_truncated(base: ImageGenerator) -> None:
    (image,) = base.generate(["effusion " * 20], [1], GenerationSettings(width=64, height=64, steps=1))
    assert image.provenance["prompt_truncated"] is True


def test_the_pipeline_is_loaded_once_per_process(tiny_model_dir: Path, monkeypatch) -> None:
    from generation import pipeline

    loads = []
    real_load = pipeline._load
    monkeypatch.setattr(pipeline, "_load", lambda *args: loads.append(args) or real_load(*args))
    clear_pipeline_cache()
    first = load_generator(tiny_model_dir, device="cpu")
    assert load_generator(tiny_model_dir, device="cpu", dtype="float32", scheduler="default") is first
    assert len(loads) == 1
    load_generator(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert len(loads) == 2
    clear_pipeline_cache()
    assert load_generator(tiny_model_dir, device="cpu") is not first
    assert len(loads) == 3


def test_bfloat16_on_the_cpu_generates(tiny_model_dir: Path) -> None:
    generator = load_generator(tiny_model_dir, device="cpu", dtype="bf16")
    (image,) = generator.generate(PROMPTS[:1], [1], GenerationSettings(width=64, height=64, steps=3))
    assert image.provenance["dtype"] == "bfloat16" and np.isfinite(image.pixels).all()


def test_the_demo_path_runs_the_reference_settings_at_64_px(base: ImageGenerator) -> None:
    (image,) = base.generate(PROMPTS[:1], [1], GenerationSettings(width=64, height=64))
    assert image.provenance["steps"] == 75 and image.provenance["guidance_scale"] == 4.0
    assert image.seconds < 10  # about 0.3-1 s on a 2-core CPU


class OutOfMemoryAbove:
    """Wraps a pipeline and raises torch's OutOfMemoryError for batches larger than `limit`."""

    def __init__(self, pipeline, limit: int) -> None:
        self._pipeline, self._limit, self.batch_sizes = pipeline, limit, []

    def __getattr__(self, name: str):
        return getattr(self._pipeline, name)

    def __call__(self, *, prompt, **kwargs):
        self.batch_sizes.append(len(prompt))
        if len(prompt) > self._limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self._pipeline(prompt=prompt, **kwargs)


def test_out_of_memory_halves_the_batch_and_remembers_it(tiny_model_dir: Path, base: ImageGenerator) -> None:
    generator = ImageGenerator(
        OutOfMemoryAbove(base.pipeline, limit=1),
        base_model_dir=tiny_model_dir,
        base_model_sha256="0" * 64,
        adapter=None,
        unmatched_adapter_keys=[],
        device=base.device,
        scheduler="default",
        compiled=None,
        load_seconds=0.0,
    )
    settings = GenerationSettings(width=64, height=64, steps=2, batch_size=4)
    images = generator.generate(PROMPTS, [1, 2, 3], settings)
    assert [image.seed for image in images] == [1, 2, 3]
    assert generator.pipeline.batch_sizes == [3, 2, 1, 1, 1]
    assert generator.batch_size_for(settings) == 1
    expected = pixels(base.generate(PROMPTS, [1, 2, 3], settings))
    np.testing.assert_allclose(pixels(images), expected, **SAME)
    generator.pipeline._limit = 0
    with pytest.raises(GenerationError, match=r"Out of memory on cpu: .* one 64x64 image in float32"):
        generator.generate(PROMPTS[:1], [1], settings)


def test_compiled_generator_pads_the_last_batch_to_a_fixed_shape(tiny_model_dir: Path, base) -> None:
    recorder = OutOfMemoryAbove(base.pipeline, limit=100)
    generator = ImageGenerator(
        recorder,
        base_model_dir=tiny_model_dir,
        base_model_sha256="0" * 64,
        adapter=None,
        unmatched_adapter_keys=[],
        device=base.device,
        scheduler="default",
        compiled="default",
        load_seconds=0.0,
    )
    images = generator.generate(PROMPTS, [1, 2, 3], GenerationSettings(width=64, height=64, steps=2, batch_size=2))
    assert recorder.batch_sizes == [2, 2] and [image.seed for image in images] == [1, 2, 3]


def test_compile_option_compiles_the_unet(tiny_model_dir: Path) -> None:
    generator = load_generator(tiny_model_dir, device="cpu", compile=True)
    # Compilation itself happens at the first call (about two minutes on this CPU), so it is not run here.
    assert generator.pipeline.unet._compiled_call_impl is not None
    assert generator.provenance["compiled"] == "default"  # True means torch's default mode on a CPU
    with pytest.raises(SettingsError, match="Unknown compile mode 'fastest'"):
        load_generator(tiny_model_dir, device="cpu", compile="fastest")
    clear_pipeline_cache()


def test_model_folder_checks(tiny_model_dir: Path, tiny_inpainting_model_dir: Path, tmp_path: Path) -> None:
    assert check_model_dir(tiny_model_dir) == []
    assert check_model_dir(tmp_path / "none") == [f"Base model folder {tmp_path / 'none'} does not exist."]
    assert "model_index.json is missing" in check_model_dir(tmp_path)[0]
    inpainting = " ".join(check_model_dir(tiny_inpainting_model_dir))
    assert "names 'StableDiffusionInpaintPipeline'" in inpainting and "9 is an inpainting model" in inpainting
    with pytest.raises(ModelError, match="does not exist"):
        load_generator(tmp_path / "none")


def test_broken_model_folders_are_described(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    shutil.rmtree(broken / "vae")
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 3463726504\n")
    config = json.loads((broken / "unet" / "config.json").read_text())
    (broken / "unet" / "config.json").write_text(json.dumps(config | {"cross_attention_dim": 1024}))
    text_weights = broken / "text_encoder" / "model.safetensors"
    text_weights.rename(text_weights.with_name("model.fp16.safetensors"))
    problems = " ".join(check_model_dir(broken))
    assert f"Component folder {broken / 'vae'} is missing." in problems
    assert "is a Git LFS pointer, not the weights" in problems
    assert "attends to 1024-wide text features but the text encoder gives 32" in problems
    assert "holds only variant weights (model.fp16.safetensors)" in problems
