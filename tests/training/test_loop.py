"""LoRA training on the tiny SD 2.1-base look-alike: what changes, the objective, resuming, and the adapter it writes.

Every run here is a few optimizer steps at 32x32 pixels on the CPU in float32.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import make_examples, quick_settings, with_prediction_type

pytestmark = pytest.mark.ml

torch = pytest.importorskip("torch")

from generation.devices import select_device  # noqa: E402
from training import lora_io  # noqa: E402
from training.loop import (  # noqa: E402
    LoraTrainer,
    ResumeError,
    TrainingError,
    TrainingExample,
    TrainingSettings,
    dataset_sha256,
    load_noise_scheduler,
    min_snr_weights,
    prepare_pixels,
    settings_help,
    train_lora,
    training_target,
)

CPU = select_device("cpu")


def make_trainer(model_dir: Path, settings: TrainingSettings, total_steps: int = 4) -> LoraTrainer:
    return LoraTrainer(model_dir, settings, CPU, total_steps=total_steps)


def encoded(trainer: LoraTrainer, examples: list[TrainingExample]):
    """Latents and frozen text embeddings of `examples`, as train_lora caches them."""
    pixels = np.stack([prepare_pixels(example.pixels, trainer.settings.resolution) for example in examples])
    with torch.no_grad():
        embeddings = trainer.encode_prompts(trainer.tokenize([example.prompt for example in examples]))
    return trainer.encode_images(pixels), embeddings


def fixed_noise(latents, seed: int = 7):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator)
    return noise, torch.randint(0, 1000, (latents.shape[0],), generator=generator)


def gradients(trainer: LoraTrainer) -> list:
    return [parameter.grad.detach().clone() for parameter in trainer.trainable_parameters]


def base_and_lora_parameters(trainer: LoraTrainer) -> tuple[dict, dict]:
    base, lora = {}, {}
    for prefix in ("unet", "text_encoder", "vae"):
        for name, parameter in getattr(trainer, prefix).named_parameters():
            (lora if "lora_" in name else base)[f"{prefix}.{name}"] = parameter.detach().clone()
    return base, lora


# --- one step -------------------------------------------------------------------------------------------------------


def test_one_step_changes_only_the_lora_weights_and_the_loss_is_finite(tiny_model_dir: Path) -> None:
    trainer = make_trainer(tiny_model_dir, quick_settings(learning_rate=1e-2))
    base_before, lora_before = base_and_lora_parameters(trainer)
    trainable = {
        f"{prefix}.{name}"
        for prefix in ("unet", "text_encoder", "vae")
        for name, parameter in getattr(trainer, prefix).named_parameters()
        if parameter.requires_grad
    }
    assert trainable == set(lora_before)  # every trainable parameter is a LoRA factor, and every factor trains
    assert len(trainer.trainable_parameters) == len(lora_before)
    latents, embeddings = encoded(trainer, make_examples(2))

    trainer.zero_grad()
    loss = trainer.loss(latents, embeddings, [1.0, 1.0])
    assert torch.isfinite(loss)
    trainer.backward(loss)
    trainer.optimizer_step()

    base_after, lora_after = base_and_lora_parameters(trainer)
    assert base_after.keys() == base_before.keys()
    for name, value in base_before.items():
        assert torch.equal(base_after[name], value), name  # bit-identical
    changed = [name for name, value in lora_before.items() if not torch.equal(lora_after[name], value)]
    # peft starts B at zero, so every B factor moves on the first step (A gets no gradient while B is zero).
    assert {name for name in lora_before if ".lora_B." in name} <= set(changed)


def test_clipping_holds_the_gradient_norm_at_max_grad_norm(tiny_model_dir: Path) -> None:
    max_norm = 1e-3
    trainer = make_trainer(tiny_model_dir, quick_settings(max_grad_norm=max_norm))
    latents, embeddings = encoded(trainer, make_examples(2))
    trainer.zero_grad()
    trainer.backward(trainer.loss(latents, embeddings, [1.0, 1.0]))
    # Norms computed here from the model's own parameters, not from the trainer's list.
    lora_parameters = [parameter for parameter in trainer.unet.parameters() if parameter.requires_grad]

    def global_norm() -> float:
        squares = [parameter.grad.double().pow(2).sum() for parameter in lora_parameters if parameter.grad is not None]
        return float(torch.stack(squares).sum().sqrt())

    before_clipping = global_norm()
    reported, _lr = trainer.optimizer_step()

    assert before_clipping > 10 * max_norm  # so that clipping really had work to do
    assert reported == pytest.approx(before_clipping, rel=1e-5)  # the reported norm is the pre-clip one
    assert global_norm() == pytest.approx(max_norm, rel=1e-4)


def test_a_zero_loss_weight_contributes_no_gradient(tiny_model_dir: Path) -> None:
    trainer = make_trainer(tiny_model_dir, quick_settings())
    latents, embeddings = encoded(trainer, make_examples(3))
    noise, timesteps = fixed_noise(latents)

    def grads_of(rows: list[int], weights: list[float]) -> list:
        trainer.zero_grad()
        loss = trainer.loss(latents[rows], embeddings[rows], weights, noise=noise[rows], timesteps=timesteps[rows])
        trainer.backward(loss)
        return gradients(trainer)

    alone = grads_of([0], [1.0])
    with_zero_weight = grads_of([0, 1], [1.0, 0.0])
    with_another_zero_weight = grads_of([0, 2], [1.0, 0.0])
    assert any(float(grad.abs().max()) > 0 for grad in alone)
    for single, paired, other in zip(alone, with_zero_weight, with_another_zero_weight, strict=True):
        # The loss is the batch mean of weighted per-sample losses: a weight-0 sample only halves the scale.
        # (Not bit-equal: a batch of two runs other kernels than a batch of one; hence a tolerance scaled to it.)
        tolerance = 1e-5 * float(single.abs().max())
        torch.testing.assert_close(paired * 2, single, rtol=1e-4, atol=tolerance)
        torch.testing.assert_close(paired, other, rtol=1e-4, atol=tolerance)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir: Path) -> None:
    plain = make_trainer(tiny_model_dir, quick_settings())
    checkpointed = make_trainer(tiny_model_dir, quick_settings(gradient_checkpointing=True))
    latents, embeddings = encoded(plain, make_examples(2))
    noise, timesteps = fixed_noise(latents)
    for trainer in (plain, checkpointed):
        trainer.zero_grad()
        trainer.backward(trainer.loss(latents, embeddings, [1.0, 1.0], noise=noise, timesteps=timesteps))
    for first, second in zip(gradients(plain), gradients(checkpointed), strict=True):
        torch.testing.assert_close(first, second, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mixed_precision", ["bf16", "fp16"])
def test_lora_weights_and_gradients_stay_float32_under_mixed_precision(
    tiny_model_dir: Path, mixed_precision: str
) -> None:
    trainer = make_trainer(tiny_model_dir, quick_settings(mixed_precision=mixed_precision))
    assert trainer.unet.conv_in.weight.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    latents, embeddings = encoded(trainer, make_examples(2))
    trainer.zero_grad()
    loss = trainer.loss(latents, embeddings, [1.0, 1.0])
    trainer.backward(loss)  # fp16 uses GradScaler: fp16 LoRA weights would fail "Attempting to unscale FP16 gradients"
    grad_norm, _lr = trainer.optimizer_step()
    assert math.isfinite(float(loss.detach())) and math.isfinite(grad_norm)
    assert {parameter.dtype for parameter in trainer.trainable_parameters} == {torch.float32}
    assert {parameter.grad.dtype for parameter in trainer.trainable_parameters} == {torch.float32}


# --- the objective --------------------------------------------------------------------------------------------------


def sd21_alphas_cumprod() -> np.ndarray:
    """ᾱ_t of SD 2.1-base's "scaled_linear" schedule: betas linear in sqrt from 0.00085 to 0.012 over 1000
    steps (scheduler_config.json), ᾱ_t = prod_{s<=t} (1 - β_s)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def test_min_snr_weights_equal_the_closed_form(tiny_model_dir: Path) -> None:
    scheduler = load_noise_scheduler(tiny_model_dir)
    alpha_bar = sd21_alphas_cumprod()
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(), alpha_bar, rtol=1e-5)
    timesteps = torch.tensor([0, 1, 100, 250, 500, 750, 999])
    snr = alpha_bar[timesteps.numpy()] / (1 - alpha_bar[timesteps.numpy()])
    gamma = 5.0
    # Hang et al. 2023 (arXiv:2303.09556): min(SNR, γ) on the x0 loss, i.e. / SNR for ε and / (SNR + 1) for v.
    expected = {
        "epsilon": np.minimum(snr, gamma) / snr,
        "v_prediction": np.minimum(snr, gamma) / (snr + 1),
    }
    for prediction_type, values in expected.items():
        weights = min_snr_weights(scheduler.alphas_cumprod, timesteps, gamma, prediction_type)
        np.testing.assert_allclose(weights.double().numpy(), values, rtol=1e-4)
    # High-noise steps (SNR < γ) keep the full weight under ε-prediction; t = 0 (SNR ≈ 1e3) is cut to γ / SNR.
    assert snr[-1] < gamma and expected["epsilon"][-1] == 1.0
    assert expected["epsilon"][0] == pytest.approx(gamma / snr[0])


def test_the_prediction_type_comes_from_the_models_scheduler(tiny_model_dir: Path, tiny_v_model_dir: Path) -> None:
    assert load_noise_scheduler(tiny_model_dir).config.prediction_type == "epsilon"
    scheduler = load_noise_scheduler(tiny_v_model_dir)
    assert scheduler.config.prediction_type == "v_prediction"
    latents = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    timesteps = torch.tensor([10, 500, 990])
    alpha_bar = torch.from_numpy(sd21_alphas_cumprod()).float()[timesteps].view(-1, 1, 1, 1)
    # v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0 (Salimans & Ho 2022).
    velocity = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents
    torch.testing.assert_close(training_target("v_prediction", scheduler, latents, noise, timesteps), velocity)
    assert training_target("epsilon", scheduler, latents, noise, timesteps) is noise

    # The trainer of the v-prediction model regresses the UNet on v.
    trainer = make_trainer(tiny_v_model_dir, quick_settings())
    assert trainer.prediction_type == "v_prediction"
    model_latents, embeddings = encoded(trainer, make_examples(2))
    noise, timesteps = fixed_noise(model_latents)
    with torch.no_grad():
        loss = trainer.loss(model_latents, embeddings, [1.0, 1.0], noise=noise, timesteps=timesteps)
        noisy = scheduler.add_noise(model_latents, noise, timesteps)
        prediction = trainer.unet(noisy, timesteps, encoder_hidden_states=embeddings).sample
        target = scheduler.get_velocity(model_latents, noise, timesteps)
    assert float(loss) == pytest.approx(float(torch.mean((prediction - target) ** 2)), rel=1e-5)


def test_an_unsupported_prediction_type_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample_model = with_prediction_type(tiny_model_dir, tmp_path / "sample-model", "sample")
    with pytest.raises(TrainingError, match="predicts 'sample'"):
        load_noise_scheduler(sample_model)


# --- data -------------------------------------------------------------------------------------------------------------


def test_preprocessing_never_flips_or_crops_a_left_marker() -> None:
    image = np.full((64, 64), 0.1, dtype=np.float32)
    image[4:12, 2:10] = 1.0  # a bright "L" marker in the top-left corner, as on a PA film
    for resolution in (64, 32, 128):
        prepared = prepare_pixels(image, resolution)
        assert prepared.shape == (3, resolution, resolution) and prepared.dtype == np.float32
        assert prepared.min() >= -1 and prepared.max() <= 1
        grey = (prepared[0] + 1) / 2
        np.testing.assert_array_equal(prepared[0], prepared[2])
        scale = resolution / 64
        corner = grey[int(4 * scale) : int(12 * scale), int(2 * scale) : int(10 * scale)]
        mirrored = grey[int(4 * scale) : int(12 * scale), resolution - int(10 * scale) : resolution - int(2 * scale)]
        assert corner.mean() > 0.8 and mirrored.mean() < 0.2  # still top left, and nothing appeared top right
        left, right = grey[:, : resolution // 2].mean(), grey[:, resolution // 2 :].mean()
        assert left > right + 0.01
    # At the training resolution nothing is resampled: the pixels pass through, only mapped to [-1, 1].
    np.testing.assert_array_equal(prepare_pixels(image, 64)[1], image * 2 - 1)


def test_dataset_hash_covers_keys_prompts_and_weights_not_their_order() -> None:
    examples = make_examples(3)
    assert dataset_sha256(examples) == dataset_sha256(list(reversed(examples)))
    reweighted = [replace(examples[0], weight=2.0), *examples[1:]]
    reprompted = [replace(examples[0], prompt="other"), *examples[1:]]
    hashes = {dataset_sha256(examples), dataset_sha256(reweighted), dataset_sha256(reprompted)}
    assert len(hashes) == 3


# --- settings and refused input -------------------------------------------------------------------------------------


def test_settings_round_trip_through_json_and_refuse_unknown_keys() -> None:
    settings = TrainingSettings(
        rank=8, min_snr_gamma=5.0, validation_prompts=("a", "b"), validation_seeds=(1, 2), max_steps=100
    )
    assert TrainingSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert TrainingSettings.from_dict({}) == TrainingSettings()
    with pytest.raises(TrainingError, match="Unknown training settings: 'learning_rat'"):
        TrainingSettings.from_dict({"learning_rat": 1e-4})
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainingSettings.from_dict({"lr_schedule": "linear"})
    assert set(settings_help()) == {item.name for item in fields(TrainingSettings)}
    assert all(text.endswith((".", ")")) for text in settings_help().values())


def test_reference_defaults() -> None:
    settings = TrainingSettings()
    assert (settings.rank, settings.alpha, settings.target_modules) == (4, 4.0, ("to_q", "to_k", "to_v", "to_out.0"))
    assert (settings.learning_rate, settings.batch_size, settings.resolution, settings.epochs) == (1e-4, 5, 512, 10)
    assert settings.problems() == []


def _examples_with(**changes) -> list[TrainingExample]:
    return [replace(make_examples(1)[0], **changes), *make_examples(2, seed=1)]


@pytest.mark.parametrize(
    ("examples", "changes", "message"),
    [
        ([], {}, "No training examples"),
        (_examples_with(pixels=np.zeros((32, 32, 3), np.float32)), {}, "2-D grey image"),
        (_examples_with(pixels=np.zeros((32, 48), np.float32)), {}, "must be square"),
        (_examples_with(pixels=np.zeros((32, 32), np.uint8)), {}, "floats in"),
        (_examples_with(pixels=np.full((32, 32), 255.0, np.float32)), {}, r"lie in \[0, 1\]"),
        (_examples_with(pixels=np.full((32, 32), np.nan, np.float32)), {}, "NaN"),
        (_examples_with(weight=-1.0), {}, "loss weight must be a number >= 0"),
        (_examples_with(key=""), {}, "key must be a non-empty text"),
        (make_examples(3, weights=[0.0, 0.0, 0.0]), {}, "Every example has loss weight 0"),
        (make_examples(2), {"resolution": 36}, "multiple of 8"),
        (make_examples(2), {"validation_every": 5}, "no validation_prompts"),
        (make_examples(2), {"mixed_precision": "fp8"}, "mixed_precision"),
    ],
)
def test_unusable_input_is_refused_before_any_work(
    tiny_model_dir: Path, tmp_path: Path, examples, changes, message
) -> None:
    output_dir = tmp_path / "run"
    with pytest.raises(TrainingError, match=message):
        train_lora(
            base_model_dir=tiny_model_dir, examples=examples, settings=quick_settings(**changes), output_dir=output_dir
        )
    assert not output_dir.exists()


def test_a_folder_that_is_not_an_sd_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(TrainingError, match=r"model_index\.json is missing"):
        train_lora(
            base_model_dir=tmp_path / "not-a-model",
            examples=make_examples(2),
            settings=quick_settings(),
            output_dir=tmp_path / "run",
        )


# --- whole runs -----------------------------------------------------------------------------------------------------


class Killed(Exception):
    """Stands in for a worker killed in the middle of a step."""


def test_k_steps_checkpoint_and_resume_equal_an_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    examples = make_examples(5)  # batch 2: three micro-batches an epoch, so step 2 stops in the middle of one
    settings = quick_settings(
        max_steps=4,
        lr_schedule="cosine",
        warmup_steps=1,
        learning_rate=1e-2,
        min_snr_gamma=5.0,
        checkpoint_every=2,
        keep_checkpoints=1,
    )
    reports = []
    whole = train_lora(
        base_model_dir=tiny_model_dir,
        examples=examples,
        settings=settings,
        output_dir=tmp_path / "whole",
        device="cpu",
        progress=reports.append,
    )
    assert whole.steps == 4 and whole.resumed_from is None and whole.completed
    assert [report.step for report in reports] == [1, 2, 3, 4]
    assert [report.epoch for report in reports] == [0, 0, 0, 1]
    # Linear warm-up over one step, then cosine to zero over the remaining three.
    expected_lr = [0.0] + [1e-2 * 0.5 * (1 + math.cos(math.pi * (step - 1) / 3)) for step in (1, 2, 3)]
    assert [report.lr for report in reports] == pytest.approx(expected_lr)
    assert all(math.isfinite(report.loss) and report.grad_norm > 0 for report in reports)

    def die_at_step_three(report) -> None:
        if report.step == 3:
            raise Killed

    interrupted_dir = tmp_path / "interrupted"
    with pytest.raises(Killed):
        train_lora(
            base_model_dir=tiny_model_dir,
            examples=examples,
            settings=settings,
            output_dir=interrupted_dir,
            device="cpu",
            progress=die_at_step_three,
        )
    assert [step for step, _path in lora_io.list_checkpoints(interrupted_dir)] == [2]
    cached = sorted((interrupted_dir / "cache").rglob("*.safetensors"))
    assert len(cached) == 5 + 2  # one latent per image, one embedding per distinct prompt
    cache_times = [path.stat().st_mtime_ns for path in cached]
    # What a kill in the middle of writing leaves: a checkpoint folder not yet renamed, a cache file half saved.
    half_checkpoint = interrupted_dir / "checkpoints" / ".partial-step-000003-0123456789ab"
    half_checkpoint.mkdir()
    (half_checkpoint / "training_state.pt").write_bytes(b"truncated")
    half_latent = interrupted_dir / "cache" / "latents" / ".partial-0123.safetensors"
    half_latent.write_bytes(b"truncated")

    resumed = train_lora(
        base_model_dir=tiny_model_dir,
        examples=examples,
        settings=settings,
        output_dir=interrupted_dir,
        device="cpu",
    )
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert resumed.final_loss == pytest.approx(whole.final_loss, abs=1e-6)
    assert [path.stat().st_mtime_ns for path in cached] == cache_times  # encoded once, read back on resume
    assert [step for step, _path in lora_io.list_checkpoints(interrupted_dir)] == [4]  # keep_checkpoints=1
    assert not half_checkpoint.exists() and not half_latent.exists()

    whole_layers = lora_io.read_adapter_layers(whole.adapter_dir)["unet"]
    resumed_layers = lora_io.read_adapter_layers(resumed.adapter_dir)["unet"]
    assert whole_layers.keys() == resumed_layers.keys()
    for key, tensor in whole_layers.items():
        torch.testing.assert_close(resumed_layers[key], tensor, rtol=0, atol=1e-6)
    assert any(float(tensor.abs().max()) > 1e-3 for key, tensor in whole_layers.items() if ".lora_B." in key)


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A completed two-step run with validation images every step, stopped once after step 2 of 3 and resumed."""
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    settings = quick_settings(
        max_steps=3, validation_every=1, validation_prompts=("view_position = PA.",), validation_seeds=(0, 1)
    )
    examples = make_examples(3)
    events: dict[str, list] = {"validation": [], "checkpoint": []}

    def call(**callbacks):
        return train_lora(
            base_model_dir=tiny_model_dir,
            examples=examples,
            settings=replace(settings, validation_steps=2),
            output_dir=output_dir,
            device="cpu",
            on_validation=lambda step, images: events["validation"].append((step, images)),
            on_checkpoint=lambda step, path: events["checkpoint"].append((step, path)),
            **callbacks,
        )

    reports = []
    stopped = call(progress=reports.append, should_stop=lambda: len(reports) >= 2)
    finished = call()
    return {
        "stopped": stopped,
        "finished": finished,
        "events": events,
        "examples": examples,
        "settings": replace(settings, validation_steps=2),
        "output_dir": output_dir,
    }


def test_should_stop_writes_a_checkpoint_and_returns(finished_run) -> None:
    stopped, output_dir = finished_run["stopped"], finished_run["output_dir"]
    assert stopped.steps == 2 and not stopped.completed
    assert stopped.adapter_dir == output_dir / "checkpoints" / "step-000002"
    assert (stopped.adapter_dir / lora_io.ADAPTER_WEIGHTS_NAME).is_file()
    assert finished_run["events"]["checkpoint"][0] == (2, stopped.adapter_dir)
    finished = finished_run["finished"]
    assert finished.resumed_from == 2 and finished.steps == 3 and finished.completed


def test_validation_images_come_at_the_asked_steps_and_at_the_end(finished_run) -> None:
    validations = finished_run["events"]["validation"]
    assert [step for step, _images in validations] == [1, 2, 3]
    for _step, images in validations:
        assert [(prompt, seed) for prompt, seed, _pixels in images] == [
            ("view_position = PA.", seed) for seed in (0, 1)
        ]
        for _prompt, _seed, pixels in images:
            assert pixels.shape == (32, 32) and pixels.dtype == np.float32
            assert pixels.min() >= 0 and pixels.max() <= 1


def test_the_adapter_passes_the_generation_pages_check_and_fits_the_model(finished_run, tiny_model_dir: Path) -> None:
    from generation.lora import check_adapter_dir, check_adapter_fits

    adapter_dir = finished_run["finished"].adapter_dir
    assert adapter_dir == finished_run["output_dir"] / "adapter"
    adapter = check_adapter_dir(adapter_dir)
    assert adapter.format == "peft" and adapter.rank == 4 and adapter.components == ("unet",)
    assert adapter.weights_file.name == "pytorch_lora_weights.safetensors"
    match = check_adapter_fits(adapter, tiny_model_dir)
    assert not match.unmatched and len(match.matched) == len(adapter.tensors)


def test_training_metadata_records_the_run(finished_run, tiny_model_dir: Path) -> None:
    from generation.hashing import model_dir_sha256

    finished = finished_run["finished"]
    stored = json.loads((finished.adapter_dir / "training_metadata.json").read_text())
    assert stored == finished.metadata
    assert stored["base_model"] == {"path": str(tiny_model_dir.resolve()), "sha256": model_dir_sha256(tiny_model_dir)}
    assert stored["dataset"]["sha256"] == dataset_sha256(finished_run["examples"])
    assert TrainingSettings.from_dict(stored["settings"]) == finished_run["settings"]
    assert (stored["steps"], stored["completed"], stored["resumed_from"]) == (3, True, 2)
    assert stored["final_loss"] == pytest.approx(finished.final_loss)
    assert {"torch", "diffusers", "peft"} <= set(stored["versions"]) and stored["device"].startswith("cpu")
    assert stored["prediction_type"] == "epsilon" and stored["mixed_precision"] == "no"


def test_a_finished_run_asked_again_returns_without_training(finished_run, tiny_model_dir: Path) -> None:
    reports = []
    again = train_lora(
        base_model_dir=tiny_model_dir,
        examples=finished_run["examples"],
        settings=replace(finished_run["settings"], validation_every=0, validation_prompts=()),  # watching only
        output_dir=finished_run["output_dir"],
        device="cpu",
        progress=reports.append,
    )
    assert reports == [] and again.steps == 3 and again.resumed_from == 3
    assert again.final_loss == pytest.approx(finished_run["finished"].final_loss)


def test_resuming_with_other_settings_model_or_examples_is_refused(
    finished_run, tiny_model_dir: Path, tiny_v_model_dir: Path
) -> None:
    common = {"output_dir": finished_run["output_dir"], "device": "cpu"}
    examples, settings = finished_run["examples"], finished_run["settings"]
    with pytest.raises(ResumeError, match=r"other settings \(learning_rate: 0.0001 then, 0.001 now\)"):
        train_lora(
            base_model_dir=tiny_model_dir,
            examples=examples,
            settings=replace(settings, learning_rate=1e-3),
            **common,
        )
    with pytest.raises(ResumeError, match="another base model"):
        train_lora(base_model_dir=tiny_v_model_dir, examples=examples, settings=settings, **common)
    with pytest.raises(ResumeError, match="other examples"):
        train_lora(base_model_dir=tiny_model_dir, examples=examples[:2], settings=settings, **common)


def train_steps(trainer: LoraTrainer, examples: list[TrainingExample], steps: int) -> tuple:
    pixels = np.stack([prepare_pixels(example.pixels, trainer.settings.resolution) for example in examples])
    latents, tokens = trainer.encode_images(pixels), trainer.tokenize([example.prompt for example in examples])
    if trainer.settings.text_encoder_lora:
        conditioning = tokens
    else:
        with torch.no_grad():
            conditioning = trainer.encode_prompts(tokens)
    for _ in range(steps):
        trainer.zero_grad()
        trainer.backward(trainer.loss(latents, conditioning, [1.0] * len(examples)))
        trainer.optimizer_step()
    return latents, tokens


SAMPLE = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))


def noise_prediction(unet, text_encoder, tokens) -> torch.Tensor:
    with torch.no_grad():
        hidden = text_encoder(tokens[:1], return_dict=False)[0]
        return unet(SAMPLE, torch.tensor([400]), encoder_hidden_states=hidden).sample


def plain_pipeline(model_dir: Path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        model_dir, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


def test_a_saved_adapter_reproduces_the_trained_model_through_diffusers_and_generation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Trained here step by step (so the trained model is at hand), UNet and text encoder, and saved as
    train_lora saves it, with alpha = 2 x rank: the scale must come from the LoRA configs in the file's header."""
    from generation.lora import check_adapter_dir
    from generation.pipeline import clear_pipeline_cache, load_generator

    trainer = make_trainer(tiny_model_dir, quick_settings(alpha=8.0, learning_rate=5e-2, text_encoder_lora=True))
    _latents, tokens = train_steps(trainer, make_examples(2), steps=3)
    adapter_dir = lora_io.write_adapter(tmp_path / "adapter", trainer.lora_layers(), trainer.lora_configs, {})
    adapter = check_adapter_dir(adapter_dir)
    assert adapter.rank == 4 and adapter.components == ("unet", "text_encoder")

    trained = noise_prediction(trainer.unet.eval(), trainer.text_encoder.eval(), tokens)
    pipeline = plain_pipeline(tiny_model_dir)
    base = noise_prediction(pipeline.unet, pipeline.text_encoder, tokens)
    pipeline.load_lora_weights(adapter_dir)
    through_diffusers = noise_prediction(pipeline.unet, pipeline.text_encoder, tokens)
    generator = load_generator(tiny_model_dir, adapter_dir, device="cpu", dtype="float32")
    try:
        through_generation = noise_prediction(generator.pipeline.unet, generator.pipeline.text_encoder, tokens)
    finally:
        clear_pipeline_cache()

    assert float((trained - base).abs().max()) > 1e-2  # the LoRA visibly changes the model
    base_unet_trained_text = noise_prediction(plain_pipeline(tiny_model_dir).unet, trainer.text_encoder, tokens)
    assert float((base_unet_trained_text - base).abs().max()) > 1e-4  # the text encoder's part alone shows too
    torch.testing.assert_close(through_diffusers, trained, rtol=0, atol=1e-5)
    torch.testing.assert_close(through_generation, trained, rtol=0, atol=1e-5)  # LoRA and QKV fused there


def test_train_lora_trains_and_saves_a_text_encoder_lora_with_the_unets(tiny_model_dir: Path, tmp_path: Path) -> None:
    from generation.lora import check_adapter_dir, check_adapter_fits

    settings = quick_settings(max_steps=2, text_encoder_lora=True, learning_rate=5e-2)
    result = train_lora(
        base_model_dir=tiny_model_dir, examples=make_examples(2), settings=settings, output_dir=tmp_path / "run"
    )
    adapter = check_adapter_dir(result.adapter_dir)
    assert adapter.components == ("unet", "text_encoder")
    assert not check_adapter_fits(adapter, tiny_model_dir).unmatched
    layers = lora_io.read_adapter_layers(result.adapter_dir)
    text_b = [tensor for key, tensor in layers["text_encoder"].items() if ".lora_B." in key]
    assert {key.rsplit(".lora_", 1)[0].rsplit(".", 1)[1] for key in layers["text_encoder"]} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
    }
    assert max(float(tensor.abs().max()) for tensor in text_b) > 1e-3  # the text encoder's LoRA was trained
