"""Device and dtype selection, with the accelerators mocked: no test here needs a GPU."""

import pytest

from generation.devices import (
    DeviceError,
    auto_batch_size,
    bytes_per_image,
    device_name,
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
    select_device,
)

torch = pytest.importorskip("torch")

GIB = 1 << 30


@pytest.fixture
def accelerators(monkeypatch: pytest.MonkeyPatch):
    """Switch the mocked accelerators on and off: accelerators(xpu=True, cuda=False, mps=False, count=1)."""

    def set_available(*, xpu: bool = False, cuda: bool = False, mps: bool = False, count: int = 1) -> None:
        monkeypatch.setattr(torch.xpu, "is_available", lambda: xpu)
        monkeypatch.setattr(torch.xpu, "device_count", lambda: count if xpu else 0)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_available


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({"xpu": True, "cuda": True, "mps": True}, "xpu:0"),
        ({"cuda": True, "mps": True}, "cuda:0"),
        ({"mps": True}, "mps"),
        ({}, "cpu"),
    ],
)
def test_auto_prefers_xpu_then_cuda_then_mps_then_cpu(accelerators, available: dict, expected: str) -> None:
    accelerators(**available)
    assert resolve_device("auto") == expected


def test_explicit_devices_resolve_and_absent_ones_are_refused(accelerators) -> None:
    accelerators(cuda=True, count=2)
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("CUDA:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="only 2 cuda device"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match="'xpu' was asked for but is not available"):
        resolve_device("xpu")
    with pytest.raises(DeviceError, match="'mps' was asked for but is not available"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


def test_this_cpu_only_machine_refuses_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(DeviceError, match="not available"):
        select_device("cuda")


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bfloat16"), ((8, 0), "bfloat16"), ((7, 5), "float16")])
def test_cuda_dtype_is_bf16_from_ampere_on(accelerators, monkeypatch, capability, expected) -> None:
    accelerators(cuda=True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
    assert resolve_dtype("cuda:0") == expected


def test_dtype_policy_for_xpu_mps_and_cpu(accelerators, monkeypatch) -> None:
    accelerators(xpu=True, mps=True)
    monkeypatch.setattr(torch.xpu, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_dtype("xpu:0") == "bfloat16"
    monkeypatch.setattr(torch.xpu, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_dtype("xpu:0") == "float16"
    assert resolve_dtype("mps") == "float16"
    assert resolve_dtype("cpu") == "float32"


def test_dtype_overrides_and_unknown_dtype() -> None:
    assert resolve_dtype("cpu", "bf16") == "bfloat16"
    assert resolve_dtype("cpu", "FP16") == "float16"
    with pytest.raises(DeviceError, match="Unknown dtype 'fp8'"):
        resolve_dtype("cpu", "fp8")


def test_select_device_names_the_device(accelerators, monkeypatch) -> None:
    accelerators(cuda=True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    choice = select_device()
    assert (choice.device, choice.kind, choice.dtype) == ("cuda:0", "cuda", "bfloat16")
    assert choice.name == "cuda: NVIDIA H100 80GB HBM3"
    assert device_name("cpu").startswith("cpu: ")


def test_bytes_per_image_follows_the_documented_estimate() -> None:
    # 512 x 512 pixels x 2 bytes (bfloat16) x (2 guided UNet passes x 256 + 1024 for the VAE decode).
    assert bytes_per_image(512, 512, "bfloat16") == 512 * 512 * 2 * 1536
    assert bytes_per_image(512, 512, "bfloat16", guidance=False) == 512 * 512 * 2 * 1280
    assert bytes_per_image(512, 512, "float32") == 2 * bytes_per_image(512, 512, "bfloat16")


def test_auto_batch_size_fits_free_memory_within_limits() -> None:
    per_image = bytes_per_image(512, 512, "bfloat16")  # 0.75 GiB
    # 4 GiB free, 1 GiB kept as headroom: 3 GiB / 0.75 GiB = 4 images.
    assert auto_batch_size("cuda:0", "bfloat16", 512, 512, free_bytes=4 * GIB) == 3 * GIB // per_image == 4
    # An 80 GB GPU fits ~90 but the batch stops at the cap, where throughput no longer grows.
    assert auto_batch_size("cuda:0", "bfloat16", 512, 512, free_bytes=80 * GIB) == 32
    assert auto_batch_size("cuda:0", "bfloat16", 512, 512, free_bytes=80 * GIB, cap=64) == 64
    # Never below one image, whatever the estimate says.
    assert auto_batch_size("cuda:0", "bfloat16", 512, 512, free_bytes=GIB // 2) == 1
    assert auto_batch_size("cpu", "float32", 64, 64, free_bytes=16 * GIB) == 4


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
