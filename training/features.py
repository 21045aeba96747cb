"""Image feature extractors for generator evaluation (FID, KID, PRDC), loaded from local weights files only.

Every extractor carries an ``ExtractorInfo``: its name, the sha256 of the weights file it was loaded from, the
feature dimension and its fixed preprocessing in words, so that a metric can always say which network produced
its features. torch is imported inside functions; importing this module needs only numpy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

INCEPTION_NAME = "inception-v3-fid-pool3"
INCEPTION_DIM = 2048
INCEPTION_SIZE = 299
# The TF-ported Inception keeps the 1008-way classifier of the 2015 TensorFlow graph (1000 classes + 8 unused).
INCEPTION_CLASSES = 1008
# pytorch-fid's preprocessing (InceptionV3 with resize_input=True, normalize_input=True), stated once so the
# words recorded with every result and the code below cannot drift apart unnoticed.
INCEPTION_PREPROCESSING = (
    "2-D grey image in [0, 1] repeated to 3 identical channels; resized to 299x299 with torch bilinear "
    "interpolation (align_corners=False, no antialiasing); scaled to [-1, 1] as 2x - 1; float32"
)
# BatchNorm's step counter is not used in evaluation and is absent from state dicts saved before PyTorch 0.4.1.
_OPTIONAL_BUFFER_SUFFIX = ".num_batches_tracked"
_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ExtractorInfo:
    """Which network produced a set of features: name, sha256 of its weights file, dimension, preprocessing."""

    name: str
    weights_sha256: str
    dim: int
    preprocessing: str


class FeatureExtractor(Protocol):
    """A frozen network mapping a batch of validated grey images to one feature vector each."""

    info: ExtractorInfo

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Features of ``images`` (each 2-D, or (H, W, 3) with equal channels, values in [0, 1]), shape (b, dim)."""
        ...


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    return sha256_of_files([path])


def sha256_of_files(paths: Sequence[Path]) -> str:
    """Hex sha256 of the files' bytes concatenated in the order given (one file: that file's sha256)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as stream:
            while chunk := stream.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def extract(extractor: FeatureExtractor, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Features of ``images`` as a float64 array of shape (n, extractor.info.dim), in the order given.

    Each image is a 2-D float array in [0, 1] (an (H, W, 3) array whose three channels are equal is accepted as
    the same image). Images are preprocessed one by one, so features do not depend on ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for index, image in enumerate(images):
        _check_image(image, index)
    blocks = [
        np.asarray(extractor.embed_batch(images[start : start + batch_size]), dtype=np.float64)
        for start in range(0, len(images), batch_size)
    ]
    if not blocks:
        return np.zeros((0, extractor.info.dim), dtype=np.float64)
    features = np.concatenate(blocks, axis=0)
    if features.shape != (len(images), extractor.info.dim):
        raise RuntimeError(
            f"{extractor.info.name} returned shape {features.shape}, expected ({len(images)}, {extractor.info.dim})"
        )
    return features


def _check_image(image: np.ndarray, index: int) -> None:
    image = np.asarray(image)
    is_grey = image.ndim == 2
    is_repeated_grey = image.ndim == 3 and image.shape[2] == 3
    if not (is_grey or is_repeated_grey):
        raise ValueError(f"image {index} has shape {image.shape}; expected (H, W) or (H, W, 3)")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image {index} has dtype {image.dtype}; expected floats in [0, 1]")
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(f"image {index} has values outside [0, 1] (or non-finite values)")
    if is_repeated_grey and not (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    ):
        raise ValueError(f"image {index} has three different channels; these extractors take grey images")


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    return image[..., 0] if image.ndim == 3 else image


@dataclass(frozen=True)
class TorchImageExtractor:
    """A frozen torch network with its fixed per-image preprocessing; built by the ``load_*`` functions below.

    ``preprocess`` maps one validated image to a (C, H, W) float32 tensor of the network's input size, and
    ``network`` maps a stacked batch to (b, dim) features.
    """

    info: ExtractorInfo
    network: Callable[[torch.Tensor], torch.Tensor]
    preprocess: Callable[[np.ndarray], torch.Tensor]

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        batch = torch.stack([self.preprocess(image) for image in images])
        with torch.inference_mode():
            return self.network(batch).double().numpy()


# --- InceptionV3, FID variant -------------------------------------------------------------------------------------


@cache
def _inception_class() -> type:
    """The FID InceptionV3 as an nn.Module class, defined on first use so that the module imports without torch.

    Module and parameter names are those of pytorch-fid's ``fid_inception_v3()`` (torchvision's ``Inception3``
    with ``num_classes=1008, aux_logits=False`` and the ``FIDInceptionA/C/E_1/E_2`` blocks), so the TF-ported
    ``pt_inception-2015-12-05-6726825d.pth`` state dict loads with ``strict=True``. Szegedy et al. 2016,
    "Rethinking the Inception Architecture for Computer Vision"; Heusel et al. 2017 for FID's use of pool3.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, **conv: Any) -> None:
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv)
            self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.bn(self.conv(x)))

    def fid_avg_pool(x: torch.Tensor) -> torch.Tensor:
        # The TF graph averages over real pixels only at the borders; torchvision's blocks count the padding.
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(nn.Module):
        def __init__(self, in_channels: int, pool_features: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            branch_pool = self.branch_pool(fid_avg_pool(x))
            return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)

    class InceptionB(nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
            return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)

    class FIDInceptionC(nn.Module):
        def __init__(self, in_channels: int, channels_7x7: int) -> None:
            super().__init__()
            c7 = channels_7x7
            self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            branch7x7dbl = x
            for layer in (
                self.branch7x7dbl_1,
                self.branch7x7dbl_2,
                self.branch7x7dbl_3,
                self.branch7x7dbl_4,
                self.branch7x7dbl_5,
            ):
                branch7x7dbl = layer(branch7x7dbl)
            branch_pool = self.branch_pool(fid_avg_pool(x))
            return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)

    class InceptionD(nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
            branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
            return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)

    class FIDInceptionE(nn.Module):
        """Mixed_7b (``max_pool=False``, pytorch-fid's FIDInceptionE_1) and Mixed_7c (``True``, FIDInceptionE_2).

        The TF graph pools with a max in its last block, an error kept for comparability of FID values.
        """

        def __init__(self, in_channels: int, *, max_pool: bool) -> None:
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            branch3x3 = self.branch3x3_1(x)
            branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
            branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else fid_avg_pool(x)
            return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)

    class FidInceptionV3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.Mixed_5b = FIDInceptionA(192, pool_features=32)
            self.Mixed_5c = FIDInceptionA(256, pool_features=64)
            self.Mixed_5d = FIDInceptionA(288, pool_features=64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
            self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
            self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
            self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
            self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
            # Unused for pool3 features, but part of the weights file, so kept for a strict load.
            self.fc = nn.Linear(INCEPTION_DIM, INCEPTION_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Pool3 features (b, 2048) of preprocessed images (b, 3, 299, 299) in [-1, 1]."""
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for block in (
                self.Mixed_5b,
                self.Mixed_5c,
                self.Mixed_5d,
                self.Mixed_6a,
                self.Mixed_6b,
                self.Mixed_6c,
                self.Mixed_6d,
                self.Mixed_6e,
                self.Mixed_7a,
                self.Mixed_7b,
                self.Mixed_7c,
            ):
                x = block(x)
            return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)

    return FidInceptionV3


def _preprocess_inception(image: np.ndarray) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    grey = torch.from_numpy(np.ascontiguousarray(_grey(image)))
    rgb = grey.expand(1, 3, *grey.shape)
    resized = F.interpolate(rgb, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return 2.0 * resized[0] - 1.0


def build_random_inception(seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the FID Inception's keys and shapes and seeded random values, for tests."""
    return _random_state_dict(_inception_class()(), seed)


def _random_state_dict(network: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random values for every tensor of ``network``, drawn in registration order.

    Convolutions and linear layers are He-normal and BatchNorm affines and statistics are drawn near identity, so
    that activations neither vanish nor explode through a deep network and its features say something about its
    architecture.
    """
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)

    def normal(template: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(template.shape, generator=generator) * std

    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.weight.copy_(normal(module.weight, (2.0 / module.weight[0].numel()) ** 0.5))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias, 0.1))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(1.0 + normal(module.weight, 0.1))
                module.bias.copy_(normal(module.bias, 0.1))
                module.running_mean.copy_(normal(module.running_mean, 0.1))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
                module.num_batches_tracked.zero_()
    return {key: value.clone() for key, value in network.state_dict().items()}


def load_inception(weights_path: Path) -> TorchImageExtractor:
    """The FID InceptionV3 from a local state-dict file in pytorch-fid's layout, in eval mode on the CPU.

    Raises ``ValueError`` naming the missing, unexpected and mis-shaped keys if the file holds another network.
    """
    import torch

    weights_path = Path(weights_path)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    network = _inception_class()()
    _load_strict(network, state, weights_path, "pytorch-fid FID InceptionV3 (pt_inception-2015-12-05)")
    network.eval()
    info = ExtractorInfo(
        name=INCEPTION_NAME,
        weights_sha256=sha256_of_file(weights_path),
        dim=INCEPTION_DIM,
        preprocessing=INCEPTION_PREPROCESSING,
    )
    return TorchImageExtractor(info=info, network=network, preprocess=_preprocess_inception)


def _load_strict(network: torch.nn.Module, state: Any, weights_path: Path, expected: str) -> None:
    if not isinstance(state, dict):
        raise ValueError(
            f"{weights_path} does not hold a state dict (found {type(state).__name__}); expected the {expected} weights"
        )
    template = network.state_dict()
    state = dict(state)
    for key in template:
        if key.endswith(_OPTIONAL_BUFFER_SUFFIX) and key not in state:
            state[key] = template[key].clone()
    missing = sorted(set(template) - set(state))
    unexpected = sorted(set(state) - set(template))
    mis_shaped = sorted(
        f"{key} {tuple(state[key].shape)} != {tuple(template[key].shape)}"
        for key in set(template) & set(state)
        if getattr(state[key], "shape", None) != template[key].shape
    )
    if missing or unexpected or mis_shaped:
        raise ValueError(
            f"{weights_path} is not the {expected} weights: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(mis_shaped)} mis-shaped {mis_shaped[:3]}"
        )
    network.load_state_dict(state, strict=True)


# --- DenseNet-121 for chest X-rays (torchxrayvision layout) ---------------------------------------------------------

XRV_DENSENET_NAME = "xrv-densenet121-res224-all-gap"
XRV_DENSENET_DIM = 1024
XRV_DENSENET_SIZE = 224
# torchxrayvision's "all" model predicts 18 pathologies; its classifier is kept only so that the file loads strictly.
XRV_DENSENET_CLASSES = 18
# torchxrayvision maps 8-bit pixels p to (2 p / 255 - 1) * 1024; for [0, 1] input that is (2x - 1) * 1024.
XRV_DENSENET_PREPROCESSING = (
    "2-D grey image in [0, 1], 1 channel; centre-cropped to a square; resized to 224x224 with torch bilinear "
    "interpolation (align_corners=False, antialias=True, standing in for torchxrayvision's anti-aliased "
    "skimage resize); scaled to [-1024, 1024] as (2x - 1) * 1024; float32"
)


@cache
def _xrv_densenet_class() -> type:
    """DenseNet-121 (Huang et al. 2017, "Densely Connected Convolutional Networks") with 1 input channel.

    Module names follow torchxrayvision's ``DenseNet`` (``features.conv0`` ... ``features.norm5``, ``classifier``),
    which is what ``DenseNet(weights="densenet121-res224-all")`` loads, so a state dict saved from that model loads
    with ``strict=True``. The features are torchxrayvision's ``features2``: ReLU, then global average pooling.
    """
    from collections import OrderedDict

    import torch
    import torch.nn.functional as F
    from torch import nn

    growth_rate, bottleneck_size, block_config, initial_features = 32, 4, (6, 12, 24, 16), 64

    class DenseLayer(nn.Sequential):
        def __init__(self, in_features: int) -> None:
            super().__init__(
                OrderedDict(
                    norm1=nn.BatchNorm2d(in_features),
                    relu1=nn.ReLU(),
                    conv1=nn.Conv2d(in_features, bottleneck_size * growth_rate, kernel_size=1, bias=False),
                    norm2=nn.BatchNorm2d(bottleneck_size * growth_rate),
                    relu2=nn.ReLU(),
                    conv2=nn.Conv2d(bottleneck_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False),
                )
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, super().forward(x)], 1)

    class XrvDenseNet121(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                conv0=nn.Conv2d(1, initial_features, kernel_size=7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(initial_features),
                relu0=nn.ReLU(),
                pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
            n_features = initial_features
            for block_index, n_layers in enumerate(block_config, start=1):
                block = nn.Sequential()
                for layer_index in range(n_layers):
                    block.add_module(f"denselayer{layer_index + 1}", DenseLayer(n_features + layer_index * growth_rate))
                layers[f"denseblock{block_index}"] = block
                n_features += n_layers * growth_rate
                if block_index != len(block_config):
                    layers[f"transition{block_index}"] = nn.Sequential(
                        OrderedDict(
                            norm=nn.BatchNorm2d(n_features),
                            relu=nn.ReLU(),
                            conv=nn.Conv2d(n_features, n_features // 2, kernel_size=1, bias=False),
                            pool=nn.AvgPool2d(kernel_size=2, stride=2),
                        )
                    )
                    n_features //= 2
            layers["norm5"] = nn.BatchNorm2d(n_features)
            self.features = nn.Sequential(layers)
            self.classifier = nn.Linear(n_features, XRV_DENSENET_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Globally pooled features (b, 1024) of preprocessed images (b, 1, 224, 224) in [-1024, 1024]."""
            return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1)), 1)

    return XrvDenseNet121


def _preprocess_xrv(image: np.ndarray) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    grey = _grey(image)
    side = min(grey.shape)
    top, left = (grey.shape[0] - side) // 2, (grey.shape[1] - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(grey[top : top + side, left : left + side]))
    size = (XRV_DENSENET_SIZE, XRV_DENSENET_SIZE)
    resized = F.interpolate(square[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)
    return (2.0 * resized[0] - 1.0) * 1024.0


def build_random_xrv_densenet(seed: int) -> dict[str, torch.Tensor]:
    """A state dict with torchxrayvision DenseNet-121's keys and shapes and seeded random values, for tests."""
    return _random_state_dict(_xrv_densenet_class()(), seed)


def load_xrv_densenet(weights_path: Path) -> TorchImageExtractor:
    """torchxrayvision's DenseNet-121 from a local state-dict file, in eval mode on the CPU.

    torchxrayvision distributes ``densenet121-res224-all`` as a pickled whole model, which cannot be unpickled
    safely without its classes; save its state dict once where torchxrayvision is installed
    (``torch.save(xrv.models.DenseNet(weights="densenet121-res224-all").state_dict(), path)``) and load that file.
    """
    import pickle

    import torch

    weights_path = Path(weights_path)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{weights_path} is not a plain state dict (perhaps torchxrayvision's pickled model); save "
            "model.state_dict() from torchxrayvision and load that file"
        ) from error
    network = _xrv_densenet_class()()
    _load_strict(network, state, weights_path, "torchxrayvision DenseNet-121")
    network.eval()
    info = ExtractorInfo(
        name=XRV_DENSENET_NAME,
        weights_sha256=sha256_of_file(weights_path),
        dim=XRV_DENSENET_DIM,
        preprocessing=XRV_DENSENET_PREPROCESSING,
    )
    return TorchImageExtractor(info=info, network=network, preprocess=_preprocess_xrv)


# --- Hugging Face image encoders ------------------------------------------------------------------------------------

_HF_WEIGHTS_PATTERNS = ("*.safetensors", "*.bin")


def load_hf_image_encoder(folder: Path) -> TorchImageExtractor:
    """A transformers vision model from a local folder (``AutoModel``, ``local_files_only``), features = pooled output.

    The preprocessing is fixed and read from the folder, not from the model's own image processor (whose crops and
    filters vary by model): grey repeated to the model's ``num_channels``, the whole image resized to its
    ``image_size`` square, then normalised with ``image_mean``/``image_std`` from ``preprocessor_config.json``.
    The recorded sha256 is over the weights files' bytes in name order.
    """
    import json

    import torch
    import torch.nn.functional as F
    from transformers import AutoModel

    folder = Path(folder)
    weights_files = sorted({path for pattern in _HF_WEIGHTS_PATTERNS for path in folder.glob(pattern)})
    if not weights_files:
        raise ValueError(f"{folder} holds no weights file (*.safetensors or *.bin)")
    processor_file = folder / "preprocessor_config.json"
    if not processor_file.is_file():
        raise ValueError(f"{folder} has no preprocessor_config.json, so the normalisation is unknown")
    processor = json.loads(processor_file.read_text())
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    model.eval()
    config = getattr(model.config, "vision_config", model.config)
    n_channels, size = int(config.num_channels), int(config.image_size)
    mean_values = _per_channel(processor, "image_mean", n_channels)
    std_values = _per_channel(processor, "image_std", n_channels)
    mean = torch.tensor(mean_values).view(n_channels, 1, 1)
    std = torch.tensor(std_values).view(n_channels, 1, 1)

    def preprocess(image: np.ndarray) -> torch.Tensor:
        grey = torch.from_numpy(np.ascontiguousarray(_grey(image)))
        resized = F.interpolate(
            grey[None, None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return (resized[0].expand(n_channels, size, size) - mean) / std

    def pooled(batch: torch.Tensor) -> torch.Tensor:
        output = model(pixel_values=batch)
        if getattr(output, "pooler_output", None) is None:
            raise ValueError(f"{type(model).__name__} from {folder} returns no pooler_output")
        return output.pooler_output.float()

    with torch.inference_mode():
        dim = pooled(torch.zeros(1, n_channels, size, size)).shape[1]
    info = ExtractorInfo(
        name=f"hf-{model.config.model_type}-pooled:{folder.name}",
        weights_sha256=sha256_of_files(weights_files),
        dim=int(dim),
        preprocessing=(
            f"2-D grey image in [0, 1] repeated to {n_channels} channel(s); resized (no crop) to {size}x{size} with "
            "torch bilinear interpolation (align_corners=False, antialias=True); normalised as (x - mean) / std "
            f"with mean {mean_values} and std {std_values}; float32"
        ),
    )
    return TorchImageExtractor(info=info, network=pooled, preprocess=preprocess)


def _per_channel(processor: dict[str, Any], key: str, n_channels: int) -> list[float]:
    if key not in processor:
        raise ValueError(f"preprocessor_config.json has no {key}")
    values = processor[key]
    values = [float(values)] * n_channels if isinstance(values, int | float) else [float(v) for v in values]
    if len(values) != n_channels:
        raise ValueError(f"preprocessor_config.json {key} has {len(values)} values for {n_channels} channels")
    return values
