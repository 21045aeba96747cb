"""Tests for training.features: weights layouts, strict loading, fixed preprocessing and pinned outputs.

No real weights are used (nothing is downloaded): seeded random weights in the layouts of the official
``pt_inception-2015-12-05-6726825d.pth`` and torchxrayvision's DenseNet-121 are saved to files and loaded through the
same loaders, and a tiny random ViT stands in for a Hugging Face image encoder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.features import (  # noqa: E402
    INCEPTION_DIM,
    INCEPTION_PREPROCESSING,
    ExtractorInfo,
    TorchImageExtractor,
    build_random_inception,
    build_random_xrv_densenet,
    extract,
    load_hf_image_encoder,
    load_inception,
    load_xrv_densenet,
)


def synthetic_radiograph(height: int = 64, width: int = 48, phase: float = 0.0) -> np.ndarray:
    """A smooth, non-square grey image in [0.1, 0.9]; non-square so that the resize is exercised in both axes."""
    y, x = np.mgrid[0:height, 0:width] / 64.0
    return 0.5 + 0.4 * np.sin(6 * x + phase) * np.cos(4 * y)


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One thread: the network gains little from two on a busy shared 2-core machine (see tests/training/conftest.py).
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("weights") / "random-inception-seed0.pth"
    torch.save(build_random_inception(seed=0), path)
    return path


@pytest.fixture(scope="session")
def inception(inception_weights: Path) -> TorchImageExtractor:
    return load_inception(inception_weights)


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    return [synthetic_radiograph(phase=phase) for phase in (0.0, 0.7, 1.4, 2.1)]


def test_module_imports_without_torch():
    blocked = "import sys; sys.modules['torch'] = None; import training.features"
    subprocess.run([sys.executable, "-c", blocked], check=True, cwd=Path(__file__).resolve().parents[2])


def test_random_state_dict_has_the_pytorch_fid_layout():
    state = build_random_inception(seed=0)
    # 94 BasicConv2d (conv.weight + 5 BatchNorm tensors each) and the 1008-way classifier, as in torchvision's
    # Inception3(num_classes=1008, aux_logits=False) that pytorch-fid's fid_inception_v3() builds.
    assert len(state) == 94 * 6 + 2
    assert not any(key.startswith("AuxLogits") for key in state)
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Conv2d_1a_3x3.bn.running_var"].shape == (32,)
    assert state["Mixed_6b.branch7x7dbl_5.conv.weight"].shape == (192, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["fc.weight"].shape == (1008, 2048)


def test_random_weights_are_seeded():
    first, again, other = build_random_inception(0), build_random_inception(0), build_random_inception(1)
    key = "Mixed_5b.branch1x1.conv.weight"
    assert torch.equal(first[key], again[key])
    assert not torch.equal(first[key], other[key])


def test_info_names_the_network_and_hashes_the_weights_file(inception, inception_weights):
    assert inception.info == ExtractorInfo(
        name="inception-v3-fid-pool3",
        weights_sha256=hashlib.sha256(inception_weights.read_bytes()).hexdigest(),
        dim=2048,
        preprocessing=INCEPTION_PREPROCESSING,
    )
    for words in ("3 identical channels", "299x299", "bilinear", "[-1, 1]"):
        assert words in inception.info.preprocessing


def test_loader_refuses_a_foreign_state_dict(tmp_path):
    foreign = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)).state_dict()
    path = tmp_path / "foreign.pth"
    torch.save(foreign, path)
    # 566 expected tensors less the 94 BatchNorm step counters, which the loader does not require.
    with pytest.raises(ValueError, match=r"is not the pytorch-fid FID InceptionV3.*472 missing keys.*7 unexpected"):
        load_inception(path)


def test_loader_refuses_a_mis_shaped_tensor(tmp_path):
    state = build_random_inception(seed=0)
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's ImageNet classifier, not the TF port's
    path = tmp_path / "mis-shaped.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 mis-shaped \['fc.weight \(1000, 2048\) != \(1008, 2048\)'\]"):
        load_inception(path)


def test_loader_refuses_an_extra_key(tmp_path):
    state = build_random_inception(seed=0)
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    path = tmp_path / "with-aux.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 unexpected keys \['AuxLogits.fc.weight'\]"):
        load_inception(path)


def test_loader_accepts_files_without_batchnorm_step_counters(tmp_path, inception, images):
    # Files saved before PyTorch 0.4.1 have no num_batches_tracked buffers; evaluation never reads them.
    state = {k: v for k, v in build_random_inception(seed=0).items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old-layout.pth"
    torch.save(state, path)
    old = load_inception(path)
    np.testing.assert_array_equal(extract(old, images[:1]), extract(inception, images[:1]))


def test_features_are_float64_of_shape_n_by_2048_and_deterministic(inception, images):
    features = extract(inception, images[:3], batch_size=2)
    assert features.shape == (3, INCEPTION_DIM)
    assert features.dtype == np.float64
    assert np.all(np.isfinite(features))
    np.testing.assert_array_equal(features, extract(inception, images[:3], batch_size=2))
    assert not np.allclose(features[0], features[1])  # different images, different features


def test_features_do_not_depend_on_batch_size(inception, images):
    one_by_one = extract(inception, images, batch_size=1)
    all_at_once = extract(inception, images, batch_size=4)
    np.testing.assert_allclose(one_by_one, all_at_once, rtol=0, atol=1e-5)


def test_grey_image_and_its_three_channel_repetition_give_the_same_features(inception, images):
    grey = images[0]
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(extract(inception, [grey]), extract(inception, [rgb]))


def test_images_outside_the_documented_input_are_refused(inception, images):
    with pytest.raises(ValueError, match="outside"):
        extract(inception, [images[0] * 255.0])
    with pytest.raises(ValueError, match="different channels"):
        extract(inception, [np.stack([images[0], images[1], images[2]], axis=2)])
    with pytest.raises(ValueError, match="shape"):
        extract(inception, [images[0][None, None]])
    with pytest.raises(ValueError, match="dtype"):
        extract(inception, [(images[0] * 255).astype(np.uint8)])


def test_no_images_give_an_empty_feature_array(inception):
    assert extract(inception, []).shape == (0, INCEPTION_DIM)


# Computed once with this module at its first commit (torch 2.13, CPU) for build_random_inception(seed=0) and
# synthetic_radiograph(); they are not published values. They pin the architecture and the preprocessing: any
# change to a layer, a pooling mode, the resize or the scaling moves them far more than the tolerance.
GOLDEN_FIRST_8 = [0.0, 0.0, 0.0, 1.891849, 1.528124, 1.382900, 0.249765, 1.570995]
GOLDEN_NORM = 40.993305


def test_golden_features_for_seed_0_weights(inception):
    features = extract(inception, [synthetic_radiograph()])[0]
    np.testing.assert_allclose(features[:8], GOLDEN_FIRST_8, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(features), GOLDEN_NORM, rtol=1e-4)


# --- torchxrayvision DenseNet-121 -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def xrv_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("weights") / "random-xrv-densenet-seed0.pth"
    torch.save(build_random_xrv_densenet(seed=0), path)
    return path


@pytest.fixture(scope="session")
def xrv_densenet(xrv_weights: Path) -> TorchImageExtractor:
    return load_xrv_densenet(xrv_weights)


def test_random_xrv_state_dict_has_the_torchxrayvision_layout():
    state = build_random_xrv_densenet(seed=0)
    assert state["features.conv0.weight"].shape == (64, 1, 7, 7)  # one input channel
    assert state["features.denseblock1.denselayer6.conv2.weight"].shape == (32, 128, 3, 3)
    assert state["features.transition3.conv.weight"].shape == (512, 1024, 1, 1)
    assert state["features.denseblock4.denselayer16.norm1.running_var"].shape == (992,)
    assert state["features.norm5.weight"].shape == (1024,)
    assert state["classifier.weight"].shape == (18, 1024)
    # torchvision's densenet121 has 7,978,856 parameters; one input channel instead of three saves 64 * 2 * 49 and
    # an 18-way classifier instead of the 1000-way one saves 982 * 1025.
    parameters = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "_tracked")))
    assert parameters == 7_978_856 - 64 * 2 * 49 - 982 * 1025


def test_xrv_features_are_1024_d_float64_batch_invariant_and_named(xrv_densenet, xrv_weights, images):
    one_by_one = extract(xrv_densenet, images, batch_size=1)
    all_at_once = extract(xrv_densenet, images, batch_size=4)
    assert one_by_one.shape == (4, 1024)
    assert one_by_one.dtype == np.float64
    # Features are O(1000) for inputs in [-1024, 1024], so float32 rounding is relative to the largest feature.
    np.testing.assert_allclose(one_by_one, all_at_once, rtol=1e-5, atol=1e-5 * np.abs(one_by_one).max())
    assert xrv_densenet.info.name == "xrv-densenet121-res224-all-gap"
    assert xrv_densenet.info.dim == 1024
    assert xrv_densenet.info.weights_sha256 == hashlib.sha256(xrv_weights.read_bytes()).hexdigest()
    assert "[-1024, 1024]" in xrv_densenet.info.preprocessing


def test_xrv_loader_refuses_inception_weights_and_pickled_models(inception_weights, tmp_path):
    with pytest.raises(ValueError, match=r"is not the torchxrayvision DenseNet-121 weights"):
        load_xrv_densenet(inception_weights)
    pickled = tmp_path / "whole-model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # as torchxrayvision ships its weights: a pickled module
    with pytest.raises(ValueError, match=r"not a plain state dict.*state_dict\(\)"):
        load_xrv_densenet(pickled)


# Computed once, like the Inception values above, for build_random_xrv_densenet(seed=0) and synthetic_radiograph().
XRV_GOLDEN_FIRST_8 = [1231.885132, 111.245583, 1010.043273, 145.999191, 1291.640015, 0.0, 55.669430, 31.558561]
XRV_GOLDEN_NORM = 16832.141174


def test_xrv_golden_features_for_seed_0_weights(xrv_densenet):
    features = extract(xrv_densenet, [synthetic_radiograph()])[0]
    np.testing.assert_allclose(features[:8], XRV_GOLDEN_FIRST_8, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(features), XRV_GOLDEN_NORM, rtol=1e-4)


# --- Hugging Face image encoders ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    folder = tmp_path_factory.mktemp("models") / "tiny-vit"
    transformers.ViTModel(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]})
    )
    return folder


def test_hf_encoder_gives_the_model_pooled_output_of_the_documented_preprocessing(tiny_vit_dir, images):
    from transformers import ViTModel

    encoder = load_hf_image_encoder(tiny_vit_dir)
    features = extract(encoder, images, batch_size=3)
    assert features.shape == (4, 32)
    assert features.dtype == np.float64

    # The same numbers by hand: grey to 3 channels, resize to 32x32, per-channel normalisation, pooler_output.
    model = ViTModel.from_pretrained(tiny_vit_dir, local_files_only=True).eval()
    grey = torch.tensor(np.stack(images), dtype=torch.float32)[:, None]
    resized = torch.nn.functional.interpolate(grey, size=(32, 32), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = model(pixel_values=(resized.expand(-1, 3, -1, -1) - mean) / std).pooler_output
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features, extract(encoder, images, batch_size=1), rtol=1e-5, atol=1e-6)

    assert encoder.info.dim == 32
    assert encoder.info.name == "hf-vit-pooled:tiny-vit"
    weights = (tiny_vit_dir / "model.safetensors").read_bytes()
    assert encoder.info.weights_sha256 == hashlib.sha256(weights).hexdigest()
    assert "[0.5, 0.4, 0.3]" in encoder.info.preprocessing


def test_hf_encoder_needs_a_stated_normalisation(tiny_vit_dir, tmp_path):
    folder = tmp_path / "no-processor"
    shutil.copytree(tiny_vit_dir, folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match=r"no preprocessor_config\.json"):
        load_hf_image_encoder(folder)
