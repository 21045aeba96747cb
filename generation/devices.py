"""Where generation runs: device choice (Intel XPU, CUDA, Apple MPS, else CPU), compute dtype and batch size.

"auto" takes the first available of XPU (native `torch.xpu`), CUDA, MPS and CPU. The dtype follows the device:
bfloat16 where the hardware supports it (XPU, CUDA compute capability >= 8, i.e. Ampere and later), float16 on
MPS and older CUDA GPUs, float32 on CPU. Both can be overridden. torch is imported inside the functions.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from typing import Any

DEVICE_KINDS = ("xpu", "cuda", "mps", "cpu")
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# Memory one image takes while it is generated, per output pixel and per byte of the compute dtype. Estimated
# for SD 2.1-base with PyTorch SDPA attention (no n^2 attention matrix): a UNet pass over one latent keeps ~100 MB
# of activations at 512x512 in 16-bit (skip connections plus the widest transformer block's feed-forward) and
# classifier-free guidance runs two of them per image; decoding one image with the VAE peaks at ~550 MB (the
# 256- and 128-channel convolutions at full resolution). Rounded up: 256 and 1024 bytes per pixel and dtype
# byte, i.e. ~0.8 GB per image at 512x512 in bfloat16. benchmarks/generation.py reports the measured peak.
UNET_BYTES_PER_PIXEL_BYTE = 256
VAE_BYTES_PER_PIXEL_BYTE = 1024
# Kept free for the allocator's fragmentation, cuDNN workspaces and torch.compile autotuning.
MEMORY_HEADROOM_FRACTION = 0.15
MEMORY_HEADROOM_BYTES = 1 << 30
# Past these sizes a larger batch no longer raises throughput (the GPU is saturated; a CPU never benefits much),
# and a Celery chunk should stay small enough to checkpoint often.
MAX_BATCH = {"cuda": 32, "xpu": 32, "mps": 8, "cpu": 4}

_DEVICE_PATTERN = re.compile(r"^(?P<kind>auto|cpu|mps|cuda|xpu)(?::(?P<index>\d+))?$")


class DeviceError(ValueError):
    """A device or dtype that was asked for and cannot be used here."""


@dataclass(frozen=True)
class DeviceChoice:
    """A resolved device: torch device string (`cuda:0`), its kind, a readable name, and the compute dtype."""

    device: str
    kind: str
    name: str
    dtype: str

    def torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def _xpu_available(torch: Any) -> bool:
    xpu = getattr(torch, "xpu", None)
    return xpu is not None and xpu.is_available()


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_kinds() -> list[str]:
    """Device kinds usable in this process, in the order "auto" tries them."""
    import torch

    checks = {
        "xpu": _xpu_available(torch),
        "cuda": torch.cuda.is_available(),
        "mps": _mps_available(torch),
        "cpu": True,
    }
    return [kind for kind in DEVICE_KINDS if checks[kind]]


def resolve_device(requested: str = "auto") -> str:
    """A torch device string for "auto", "xpu", "cuda", "cuda:1", "mps" or "cpu"; DeviceError if unavailable."""
    import torch

    found = _DEVICE_PATTERN.match(requested.strip().lower())
    if found is None:
        raise DeviceError(f"Unknown device {requested!r}; use auto, xpu, xpu:N, cuda, cuda:N, mps or cpu.")
    kind, index = found["kind"], found["index"]
    if kind == "auto":
        kind = available_kinds()[0]
        return f"{kind}:0" if kind in ("cuda", "xpu") else kind
    if kind in ("cpu", "mps") and index not in (None, "0"):
        raise DeviceError(f"Device {requested!r}: {kind} has no numbered devices.")
    if kind not in available_kinds():
        build = torch.__version__
        raise DeviceError(f"Device {requested!r} was asked for but is not available here (torch {build}).")
    if kind in ("cuda", "xpu"):
        count = getattr(torch, kind).device_count()
        number = int(index or 0)
        if number >= count:
            raise DeviceError(f"Device {requested!r} was asked for but only {count} {kind} device(s) exist.")
        return f"{kind}:{number}"
    return kind


def _device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def default_dtype(device: str) -> str:
    """The compute dtype the device runs fastest without loss of range: see the module docstring."""
    import torch

    kind = device.partition(":")[0]
    if kind == "cuda":
        major, _minor = torch.cuda.get_device_capability(_device_index(device))
        return "bfloat16" if major >= 8 else "float16"
    if kind == "xpu":
        supported = getattr(torch.xpu, "is_bf16_supported", lambda: True)()
        return "bfloat16" if supported else "float16"
    if kind == "mps":
        return "float16"
    return "float32"


def resolve_dtype(device: str, requested: str = "auto") -> str:
    name = requested.strip().lower()
    if name == "auto":
        return default_dtype(device)
    if name not in DTYPE_NAMES:
        raise DeviceError(f"Unknown dtype {requested!r}; use auto, float32, float16 or bfloat16.")
    return DTYPE_NAMES[name]


def device_name(device: str) -> str:
    """A readable name for provenance, e.g. "cuda: NVIDIA H100 80GB HBM3" or "cpu: x86_64 (16 threads)"."""
    import torch

    kind = device.partition(":")[0]
    if kind in ("cuda", "xpu"):
        return f"{kind}: {getattr(torch, kind).get_device_name(_device_index(device))}"
    if kind == "mps":
        return f"mps: Apple {platform.machine()}"
    return f"cpu: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def select_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Resolve a device and dtype request into a `DeviceChoice`; raises DeviceError with a clear message."""
    resolved = resolve_device(device)
    return DeviceChoice(
        device=resolved,
        kind=resolved.partition(":")[0],
        name=device_name(resolved),
        dtype=resolve_dtype(resolved, dtype),
    )


# --- memory ---------------------------------------------------------------------------------------------------------


def _cpu_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_memory_bytes(device: str) -> int | None:
    """Memory free for new allocations on the device (None where the backend cannot tell)."""
    import torch

    kind = device.partition(":")[0]
    if kind == "cuda":
        return torch.cuda.mem_get_info(_device_index(device))[0]
    if kind == "xpu":
        if hasattr(torch.xpu, "mem_get_info"):
            return torch.xpu.mem_get_info(_device_index(device))[0]
        total = torch.xpu.get_device_properties(_device_index(device)).total_memory
        return total - torch.xpu.memory_reserved(_device_index(device))
    if kind == "mps":
        return max(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory(), 0)
    return _cpu_available_bytes()


def bytes_per_image(height: int, width: int, dtype: str, *, guidance: bool = True) -> int:
    """Estimated peak memory of generating one image (see UNET_/VAE_BYTES_PER_PIXEL_BYTE)."""
    unet_passes = 2 if guidance else 1
    per_pixel_byte = unet_passes * UNET_BYTES_PER_PIXEL_BYTE + VAE_BYTES_PER_PIXEL_BYTE
    return height * width * DTYPE_BYTES[dtype] * per_pixel_byte


def auto_batch_size(
    device: str,
    dtype: str,
    height: int,
    width: int,
    *,
    guidance: bool = True,
    free_bytes: int | None = None,
    cap: int | None = None,
) -> int:
    """How many images to generate at once: free memory, less headroom, over `bytes_per_image`, within 1..cap.

    Call it with the model already loaded, so that free memory excludes the weights. Where free memory is unknown
    the batch is 1. The estimate can be wrong either way; the pipeline halves the batch on out-of-memory.
    """
    kind = device.partition(":")[0]
    cap = MAX_BATCH[kind] if cap is None else cap
    free = free_memory_bytes(device) if free_bytes is None else free_bytes
    if free is None:
        return 1
    usable = free - max(int(free * MEMORY_HEADROOM_FRACTION), MEMORY_HEADROOM_BYTES)
    fitting = usable // bytes_per_image(height, width, dtype, guidance=guidance)
    return int(max(1, min(cap, fitting)))


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocation failures of any backend (CUDA/XPU raise OutOfMemoryError, MPS a RuntimeError)."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def empty_cache(device: str) -> None:
    import torch

    kind = device.partition(":")[0]
    if kind == "cuda":
        torch.cuda.empty_cache()
    elif kind == "xpu":
        torch.xpu.empty_cache()
    elif kind == "mps":
        torch.mps.empty_cache()


def synchronize(device: str) -> None:
    """Wait for queued work on the device, so that a wall-clock measurement covers it."""
    import torch

    kind = device.partition(":")[0]
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "xpu":
        torch.xpu.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: str) -> None:
    import torch

    kind = device.partition(":")[0]
    if kind in ("cuda", "xpu"):
        getattr(torch, kind).reset_peak_memory_stats(device)


def peak_memory_bytes(device: str) -> int | None:
    """Peak bytes allocated by torch on the device since `reset_peak_memory`; on CPU the process's peak RSS."""
    import torch

    kind = device.partition(":")[0]
    if kind in ("cuda", "xpu"):
        return getattr(torch, kind).max_memory_allocated(device)
    if kind == "mps":
        return torch.mps.driver_allocated_memory()
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    except (ImportError, OSError):
        return None
