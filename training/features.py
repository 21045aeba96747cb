"""Image feature extractors for generator evaluation (FID, KID, PRDC), loaded from local weights files only.

Every extractor carries an ``ExtractorInfo``: its name, the sha256 of the weights file it was loaded from, the
feature dimension and its fixed preprocessing in words, so that a metric can always say which network produced
its features. torch is imported inside functions; importing this module needs only numpy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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
    digest = hashlib.sha256()
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


@dataclass(frozen=True)
class InceptionExtractor:
    """The FID InceptionV3 (pool3, 2048-d) with pytorch-fid's preprocessing; build with ``load_inception``."""

    info: ExtractorInfo
    network: Any

    def embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        batch = torch.stack([_preprocess_inception(image) for image in images])
        with torch.inference_mode():
            return self.network(batch).double().numpy()


def build_random_inception(seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the FID Inception's keys and shapes and seeded random values, for tests.

    Convolutions are He-normal and BatchNorm statistics and affines are drawn near identity, so that activations
    neither vanish nor explode through the 90-odd layers and the features are informative about the architecture.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    network = _inception_class()()
    state: dict[str, torch.Tensor] = {}
    for key, template in network.state_dict().items():
        if key.endswith(_OPTIONAL_BUFFER_SUFFIX):
            value = torch.zeros_like(template)
        elif key.endswith("conv.weight") or key == "fc.weight":
            fan_in = template[0].numel()
            value = torch.randn(template.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.weight"):
            value = 1.0 + 0.1 * torch.randn(template.shape, generator=generator)
        elif key.endswith("bn.running_var"):
            value = 0.5 + torch.rand(template.shape, generator=generator)
        else:  # bn.bias, bn.running_mean, fc.bias
            value = 0.1 * torch.randn(template.shape, generator=generator)
        state[key] = value.to(template.dtype)
    return state


def load_inception(weights_path: Path) -> InceptionExtractor:
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
    return InceptionExtractor(info=info, network=network)


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
