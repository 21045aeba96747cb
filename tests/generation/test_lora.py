"""LoRA adapter files: layout detection, legacy key conversion, header reading without torch, and matching."""

import pickle
import zipfile
from pathlib import Path

import pytest

from generation.lora import (
    AdapterError,
    check_adapter_dir,
    check_adapter_fits,
    detect_format,
    find_weights_file,
    legacy_to_peft_key,
    linear_layer_shapes,
    match_adapter,
    model_linear_layer_shapes,
    peft_to_legacy_key,
    peft_to_legacy_keys,
    read_safetensors_header,
    read_torch_checkpoint_header,
    require_match,
)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.ml

BLOCK = "down_blocks.0.attentions.0.transformer_blocks.0"


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path), metadata=metadata)
    return path


def peft_tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "pytorch_lora_weights.safetensors"))


@pytest.mark.parametrize(
    ("legacy", "peft"),
    [
        (f"{BLOCK}.attn1.processor.to_q_lora.down.weight", f"unet.{BLOCK}.attn1.to_q.lora_A.weight"),
        (f"{BLOCK}.attn2.processor.to_v_lora.up.weight", f"unet.{BLOCK}.attn2.to_v.lora_B.weight"),
        # The output projection is `to_out[0]` in today's modules.
        (f"{BLOCK}.attn1.processor.to_out_lora.up.weight", f"unet.{BLOCK}.attn1.to_out.0.lora_B.weight"),
        (f"unet.{BLOCK}.attn1.processor.to_k_lora.down.weight", f"unet.{BLOCK}.attn1.to_k.lora_A.weight"),
    ],
)
def test_legacy_keys_convert_to_peft_keys_and_back(legacy: str, peft: str) -> None:
    assert legacy_to_peft_key(legacy) == peft
    assert peft_to_legacy_key(peft) == legacy.removeprefix("unet.")


def test_non_legacy_keys_are_left_alone_and_non_attention_keys_have_no_legacy_name() -> None:
    assert legacy_to_peft_key(f"unet.{BLOCK}.attn1.to_q.lora_A.weight") is None
    with pytest.raises(AdapterError, match="not an attention projection"):
        peft_to_legacy_key(f"unet.{BLOCK}.ff.net.2.lora_A.weight")


def test_format_is_detected_from_the_keys() -> None:
    assert detect_format([f"unet.{BLOCK}.attn1.to_q.lora_A.weight"]) == "peft"
    assert detect_format([f"{BLOCK}.attn1.processor.to_q_lora.down.weight"]) == "legacy_attn_procs"
    assert detect_format(["conv_in.weight", "time_embedding.linear_1.bias"]) is None


def test_checkpoint_header_reader_matches_torch_load(tiny_legacy_adapter_dir: Path) -> None:
    path = tiny_legacy_adapter_dir / "pytorch_lora_weights.bin"
    header = read_torch_checkpoint_header(path)
    loaded = torch.load(path, weights_only=True)
    assert set(header) == set(loaded)
    for key, tensor in loaded.items():
        assert header[key].shape == tuple(tensor.shape)
        assert header[key].dtype == "float32"


def test_checkpoint_header_reader_refuses_foreign_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"key": print}))
    with pytest.raises(AdapterError, match=r"builtins\.print is not allowed"):
        read_torch_checkpoint_header(path)
    not_zip = tmp_path / "old.bin"
    not_zip.write_bytes(pickle.dumps({"key": 1}))
    with pytest.raises(AdapterError, match="not a torch zip checkpoint"):
        read_torch_checkpoint_header(not_zip)


def test_safetensors_header_gives_shapes_and_metadata(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "a.safetensors", {"x": torch.zeros(4, 32)}, {"lora_adapter_metadata": "{}"})
    tensors, metadata = read_safetensors_header(path)
    assert tensors["x"].shape == (4, 32) and tensors["x"].dtype == "float32"
    assert metadata == {"lora_adapter_metadata": "{}"}
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:20])
    with pytest.raises(AdapterError, match="not a safetensors file"):
        read_safetensors_header(truncated)


def test_weights_file_is_found_or_the_folder_is_refused(tmp_path: Path, tiny_peft_adapter_dir: Path) -> None:
    assert find_weights_file(tiny_peft_adapter_dir).name == "pytorch_lora_weights.safetensors"
    direct = tiny_peft_adapter_dir / "pytorch_lora_weights.safetensors"
    assert find_weights_file(direct) == direct
    with pytest.raises(AdapterError, match="does not exist"):
        find_weights_file(tmp_path / "missing")
    with pytest.raises(AdapterError, match="holds no weights file"):
        find_weights_file(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / "b.bin").write_bytes(b"")
    with pytest.raises(AdapterError, match=r"several weights files \(a.safetensors, b.bin\)"):
        find_weights_file(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AdapterError, match=r"neither \.safetensors nor \.bin"):
        find_weights_file(tmp_path / "notes.txt")


def test_adapter_without_lora_keys_is_refused_with_sample_keys(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"conv_in.weight": torch.zeros(4, 4)})
    with pytest.raises(AdapterError, match=r"no LoRA keys .* sample keys: conv_in.weight"):
        check_adapter_dir(tmp_path)


def test_adapter_info_reports_format_rank_hash_and_components(tiny_peft_adapter_dir: Path) -> None:
    import hashlib

    info = check_adapter_dir(tiny_peft_adapter_dir)
    assert (info.format, info.rank, info.components) == ("peft", 4, ("unet",))
    assert info.sha256 == hashlib.sha256(info.weights_file.read_bytes()).hexdigest()
    assert info.provenance()["format"] == "peft" and info.provenance()["modules"] == 32


def test_meta_device_shapes_equal_the_loaded_model_shapes(tiny_model_dir: Path) -> None:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    text_encoder = CLIPTextModel.from_pretrained(tiny_model_dir / "text_encoder")
    assert model_linear_layer_shapes(tiny_model_dir) == linear_layer_shapes(unet=unet, text_encoder=text_encoder)


def test_matching_adapter_matches_every_key(tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> None:
    info = check_adapter_dir(tiny_peft_adapter_dir)
    match = match_adapter(info, model_linear_layer_shapes(tiny_model_dir))
    assert len(match.matched) == 64 and match.unmatched == ()
    require_match(info, match)
    assert check_adapter_fits(info, tiny_model_dir) == match


def test_adapter_for_another_model_matches_nothing(tmp_path: Path, tiny_model_dir, tiny_peft_adapter_dir) -> None:
    # Same tensors under SD 1.x-era module names that this UNet does not have.
    renamed = {
        key.replace("down_blocks.0", "input_blocks.1").replace("up_blocks.1", "output_blocks.3"): value
        for key, value in peft_tensors(tiny_peft_adapter_dir).items()
        if "mid_block" not in key
    }
    info = check_adapter_dir(write_safetensors(tmp_path / "pytorch_lora_weights.safetensors", renamed))
    match = match_adapter(info, model_linear_layer_shapes(tiny_model_dir))
    assert match.matched == ()
    with pytest.raises(AdapterError, match=r"matches no layer of the model: none of its 48 keys fit"):
        require_match(info, match)
    with pytest.raises(AdapterError, match="matches no layer"):
        check_adapter_fits(info, tiny_model_dir)


def test_partly_matching_adapter_is_refused_above_the_tolerance(tmp_path, tiny_model_dir, tiny_peft_adapter_dir):
    tensors = peft_tensors(tiny_peft_adapter_dir)
    tensors["unet.mid_block.extra_proj.lora_A.weight"] = torch.zeros(4, 64)
    # A factor whose shape fits no layer: trained for a wider model.
    key = f"unet.{BLOCK}.attn1.to_q.lora_A.weight"
    tensors[key] = torch.zeros(4, 320)
    info = check_adapter_dir(write_safetensors(tmp_path / "pytorch_lora_weights.safetensors", tensors))
    match = match_adapter(info, model_linear_layer_shapes(tiny_model_dir))
    assert set(match.unmatched) == {"unet.mid_block.extra_proj.lora_A.weight", key}
    assert "does not fit layer (32 x 32)" in match.reasons[key]
    with pytest.raises(AdapterError, match=r"only partly matches the model: 2 of 65 keys fit no layer"):
        require_match(info, match)
    require_match(info, match, tolerance=0.05)  # 2/65 = 3% is within a 5% tolerance


def test_legacy_writer_is_the_inverse_of_the_converter(tiny_peft_adapter_dir: Path, tiny_legacy_adapter_dir):
    legacy = torch.load(tiny_legacy_adapter_dir / "pytorch_lora_weights.bin", weights_only=True)
    peft = peft_tensors(tiny_peft_adapter_dir)
    assert set(peft_to_legacy_keys(peft)) == set(legacy)
    for key, value in peft.items():
        assert torch.equal(legacy[peft_to_legacy_key(key)], value)
