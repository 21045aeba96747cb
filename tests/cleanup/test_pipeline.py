"""clean_image end to end: the no-text path, exact preservation outside the mask, verification, SAM + SD."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cleanup.detect import TextBox
from cleanup.evaluation import match_boxes
from cleanup.ocr import tesseract_available
from cleanup.pipeline import CleanupConfig, CleanupResult, build_stages, clean_image

from .conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed")


def test_an_image_without_text_passes_unchanged_and_says_so(clean_phantom):
    result = clean_image(clean_phantom)
    assert result.boxes == () and result.residual == () and result.changed is False
    assert np.array_equal(result.cleaned, clean_phantom) and result.cleaned is not clean_phantom
    assert result.mask.dtype == np.uint8 and not result.mask.any()
    assert set(result.timings) == {"detect"}
    document = json.loads(json.dumps(result.to_dict()))
    assert document["changed"] is False and document["mask"]["masked_pixels"] == 0
    assert document["segmenter"] == "glyph-threshold" and document["inpainter"] == "classical"


def test_labels_are_removed_and_nothing_outside_the_dilated_mask_changes(labelled_scene):
    pixels, truth = labelled_scene
    result = clean_image(pixels)
    assert result.changed is True
    assert match_boxes(list(truth.values()), [(b.x, b.y, b.w, b.h) for b in result.boxes]).found == (True,) * 6
    outside = result.mask == 0
    assert np.array_equal(result.cleaned[outside], pixels[outside])
    assert set(np.unique(result.mask)) == {0, 255}
    # Verification runs the same detector on the cleaned image: nothing of the labels is left to find.
    assert result.verified and result.residual == () and result.residual_text == ()
    assert set(result.timings) == {"detect", "segment", "inpaint", "verify"}
    document = json.loads(json.dumps(result.to_dict()))
    assert document["mask"]["masked_pixels"] == int(np.count_nonzero(result.mask))
    assert [TextBox.from_dict(b) for b in document["boxes"]] == list(result.boxes)


def test_the_mask_is_the_segmentation_dilated_as_configured(labelled_scene):
    pixels, _ = labelled_scene
    thin = clean_image(pixels, CleanupConfig(dilation_kernel=1, dilation_iterations=0, verify=False))
    wide = clean_image(pixels, CleanupConfig(dilation_kernel=5, dilation_iterations=2, verify=False))
    assert thin.boxes == wide.boxes and wide.residual == () and "verify" not in wide.timings
    assert (wide.mask[thin.mask > 0] > 0).all() and wide.masked_pixels > thin.masked_pixels


def test_sam_and_stable_diffusion_paths_run_with_tiny_offline_models(
    labelled_scene, tiny_sam_checkpoint, tiny_sd_inpainting
):
    pixels, _ = labelled_scene
    config = CleanupConfig(
        sam_checkpoint=str(tiny_sam_checkpoint),
        inpainting_model=str(tiny_sd_inpainting),
        inpainting_steps=2,
        inpainting_size=64,
        device="cpu",
        verify=False,
    )
    detector, segmenter, inpainter = build_stages(config)
    assert (segmenter.name, inpainter.name) == ("sam", "stable-diffusion-inpainting")
    result = clean_image(pixels, config, stages=(detector, segmenter, inpainter))
    assert result.changed and result.segmenter == "sam"
    assert result.inpainter_settings["prompt"] == "No text, clean background"
    outside = result.mask == 0
    assert np.array_equal(result.cleaned[outside], pixels[outside])


def test_a_misbehaving_inpainter_is_caught_before_its_result_is_returned(labelled_scene):
    pixels, _ = labelled_scene

    class Smudger:
        name = "smudger"

        def inpaint(self, pixels, mask):
            return np.clip(pixels + 0.01, 0, 1)  # touches every pixel

        def settings(self):
            return {}

    detector, segmenter, _ = build_stages(CleanupConfig())
    with pytest.raises(RuntimeError, match="smudger inpainter changed pixels outside the mask"):
        clean_image(pixels, stages=(detector, segmenter, Smudger()))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"segmenter": "sam"}, "needs sam_checkpoint"),
        ({"inpainter": "sd"}, "needs inpainting_model"),
        ({"segmenter": "magic"}, "Unknown segmenter"),
        ({"inpainter": "paint"}, "Unknown inpainter"),
        ({"dilation_kernel": 0}, "dilation_kernel"),
    ],
)
def test_inconsistent_configurations_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        CleanupConfig(**options)


def test_bad_pixels_are_refused():
    with pytest.raises(ValueError, match="2-D grayscale"):
        clean_image(np.zeros((8, 8, 3), np.float32))


def test_result_is_frozen():
    result = clean_image(np.zeros((32, 32), np.float32), CleanupConfig(detector="bars"))
    assert isinstance(result, CleanupResult)
    with pytest.raises(AttributeError):
        result.changed = True  # type: ignore[misc]


def test_cleanup_modules_import_neither_django_nor_ml_libraries():
    code = (
        "import sys, cleanup.pipeline, cleanup.detect, cleanup.segment, cleanup.inpaint, cleanup.evaluation, "
        "cleanup.torchvision_compat, cleanup.rendered_text;"
        "heavy = {'django', 'torch', 'cv2', 'diffusers', 'segment_anything', 'pytesseract'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr
