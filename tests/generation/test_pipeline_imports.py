"""The generation modules import, and check model and adapter folders, without any ML library installed, as
the web process must (it validates forms and never generates)."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "diffusers", "peft", "transformers", "safetensors", "accelerate")

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked for this test")
            return None

    sys.meta_path.insert(0, Blocker())

    from generation import devices, hashing, lora, pipeline, prompts, tiny_models  # noqa: F401

    model_dir, peft_dir, legacy_dir = (Path(arg) for arg in sys.argv[1:4])
    assert pipeline.check_model_dir(model_dir) == [], pipeline.check_model_dir(model_dir)
    assert lora.check_adapter_dir(peft_dir).format == "peft"
    legacy = lora.check_adapter_dir(legacy_dir)
    assert legacy.format == "legacy_attn_procs" and legacy.rank == 4
    pipeline.GenerationSettings(width=100).problems()
    prompts.repeat_prompts(prompts.parse_counts("2 x No findings"))
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("imported without ML libraries")
    """
).format(blocked=BLOCKED)


def test_modules_import_and_check_folders_without_ml_libraries(
    tiny_model_dir: Path, tiny_peft_adapter_dir: Path, tiny_legacy_adapter_dir: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_dir), str(tiny_peft_adapter_dir), str(tiny_legacy_adapter_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "imported without ML libraries" in result.stdout
