"""The new-batch form: every kind of bad input is a message on the form and creates nothing; good input queues a
batch; the demo model is the default choice when it is there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from generation.forms import BatchForm
from generation.models import BatchImage, GenerationBatch
from generation.roots import DEMO_MARKER
from generation.selectors import model_folders

pytestmark = [pytest.mark.ml, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def model_roots(settings, tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> None:
    settings.MODEL_ROOT = tiny_model_dir.parent
    settings.MODEL_EXTRA_ROOTS = [tiny_peft_adapter_dir.parent]


@pytest.fixture
def valid(tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> dict:
    """A complete, valid form submission (template source, two counts)."""
    return {
        "base_model": tiny_model_dir.name,
        "adapter": str(tiny_peft_adapter_dir),
        "prompt_source": "template",
        "template": "view_position = PA. modality = CR. {finding}",
        "template_fields": "finding = 2 x No findings, 1 x small right pleural effusion",
        "interleave": "on",
        "prompt_list": "",
        "csv_column": "prompt",
        "images_per_prompt": "1",
        "steps": "4",
        "guidance_scale": "4",
        "width": "64",
        "height": "64",
        "scheduler": "default",
        "negative_prompt": "",
        "batch_size": "",
        "base_seed": "42",
        "name": "",
    }


@pytest.fixture
def unreadable_adapter(tiny_model_dir: Path) -> Path:
    folder = tiny_model_dir.parent / "unreadable-adapter"
    folder.mkdir(exist_ok=True)
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    return folder


@pytest.fixture
def misfit_adapter(tiny_model_dir: Path) -> Path:
    """A well-formed LoRA file whose layers do not exist in the model (trained for another architecture)."""
    import torch
    from safetensors.torch import save_file

    folder = tiny_model_dir.parent / "misfit-adapter"
    folder.mkdir(exist_ok=True)
    save_file(
        {
            "unet.mid_block.attentions.9.to_q.lora_A.weight": torch.zeros(4, 320),
            "unet.mid_block.attentions.9.to_q.lora_B.weight": torch.zeros(320, 4),
        },
        str(folder / "pytorch_lora_weights.safetensors"),
    )
    return folder


def post(client, user, data: dict, files: dict | None = None):
    client.force_login(user)
    return client.post(reverse("generation:batch_list"), {**data, **(files or {})})


BAD_INPUTS = [
    # (what, changes to the valid submission, field, words in the message)
    ("missing model folder", {"base_model": "no-such-model"}, "base_model", "does not exist"),
    ("model outside the roots", {"base_model": "/etc"}, "base_model", "is not inside a model folder root"),
    ("not a model folder", {"base_model": "/"}, "base_model", "is not inside a model folder root"),
    ("width not a multiple of 8", {"width": "500"}, "width", "multiple of 8"),
    ("height too large", {"height": "4096"}, "height", "from 64 to 2048 pixels"),
    ("no steps", {"steps": "0"}, "steps", "Steps must be a whole number from 1 to 500"),
    ("guidance out of range", {"guidance_scale": "31"}, "guidance_scale", "Guidance scale must be a number from 0"),
    ("zero images per call", {"batch_size": "0"}, "batch_size", "Batch size must be empty"),
    ("unknown sampler", {"scheduler": "warp-drive"}, "scheduler", "Select a valid choice"),
    ("negative seed", {"base_seed": "-1"}, "base_seed", "base seed must be a whole number from 0"),
    ("unknown template field", {"template": "{finding} in {view}"}, "template", "unknown field(s) {view}"),
    ("malformed field line", {"template_fields": "finding"}, "template", "is not of the form 'name = value'"),
    ("zero count", {"template_fields": "finding = 0 x No findings"}, "template", "a count must be at least 1"),
    ("empty list", {"prompt_source": "list", "prompt_list": "\n  \n"}, "prompt_list", "No prompts given"),
    (
        "too many images",
        {"prompt_source": "list", "prompt_list": "a\nb", "images_per_prompt": "60000"},
        "images_per_prompt",
        "at most 100000",
    ),
    ("CSV without a file", {"prompt_source": "csv"}, "csv_file", "Choose a CSV file"),
]


@pytest.mark.parametrize(("what", "changes", "field", "words"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_form_error_and_creates_nothing(client, coordinator, valid, what, changes, field, words):
    response = post(client, coordinator, {**valid, **changes})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, (what, errors)
    assert words in " ".join(errors[field]), (what, errors[field])
    assert words in response.content.decode().replace("&#x27;", "'"), "the message is shown on the page"
    assert not GenerationBatch.objects.exists() and not BatchImage.objects.exists()


@pytest.mark.parametrize(
    ("adapter_fixture", "words"),
    [
        ("unreadable_adapter", "has an unreadable safetensors header"),
        ("misfit_adapter", "matches no layer of the model"),
    ],
)
def test_adapters_that_cannot_be_used_are_refused_on_the_form(
    request, client, coordinator, valid, adapter_fixture, words
):
    adapter = request.getfixturevalue(adapter_fixture)
    response = post(client, coordinator, {**valid, "adapter": str(adapter)})
    assert words in " ".join(response.context["form"].errors["adapter"])
    assert not GenerationBatch.objects.exists()


@pytest.mark.parametrize(
    ("csv_bytes", "words"),
    [
        (b"text,seed\nNo findings,1\n", "has no column 'prompt'; its columns are 'text', 'seed'"),
        (b"prompt\n\xff\xfe broken\n", "is not UTF-8 text"),
        (b"", "is empty"),
        (b"prompt,other\n,1\n  ,2\n", "Column 'prompt' of prompts.csv has no values"),
    ],
)
def test_bad_prompt_csv_files_are_refused_on_the_form(client, coordinator, valid, csv_bytes, words):
    upload = SimpleUploadedFile("prompts.csv", csv_bytes, content_type="text/csv")
    response = post(client, coordinator, {**valid, "prompt_source": "csv"}, {"csv_file": upload})
    assert words in " ".join(response.context["form"].errors["csv_file"])
    assert not GenerationBatch.objects.exists()


def test_a_good_submission_queues_the_batch_with_every_image(
    client, coordinator, valid, tiny_model_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, coordinator, valid)
    batch = GenerationBatch.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("generation:batch_detail", args=[batch.pk])
    assert len(callbacks) == 1
    assert batch.total == 3 and batch.base_model_dir == str(tiny_model_dir.resolve())
    assert list(batch.images.order_by("index").values_list("prompt", "seed")) == [
        ("view_position = PA. modality = CR. No findings", 42),
        ("view_position = PA. modality = CR. small right pleural effusion", 43),
        ("view_position = PA. modality = CR. No findings", 44),
    ]


def test_a_prompt_csv_and_images_per_prompt(client, coordinator, valid, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("impressions.csv", b"impression;id\nNo findings;1\nPleural effusion;2\n")
    data = {**valid, "prompt_source": "csv", "csv_column": "impression", "images_per_prompt": "2"}
    with django_capture_on_commit_callbacks(execute=False):
        post(client, coordinator, data, {"csv_file": upload})
    batch = GenerationBatch.objects.get()
    assert list(batch.images.order_by("index").values_list("prompt", flat=True)) == [
        "No findings",
        "No findings",
        "Pleural effusion",
        "Pleural effusion",
    ]


def test_the_demo_model_is_the_default_choice_when_it_is_there(tiny_model_dir, tiny_peft_adapter_dir):
    assert BatchForm(folders=model_folders()).initial.get("width") is None, "no demo model: reference settings"
    demo = tiny_model_dir.parent / "demo-tiny-sd"
    demo_adapter = tiny_model_dir.parent / "demo-tiny-lora"
    shutil.copytree(tiny_model_dir, demo)
    shutil.copytree(tiny_peft_adapter_dir, demo_adapter)
    for folder in (demo, demo_adapter):
        (folder / DEMO_MARKER).write_text("demo")
    try:
        form = BatchForm(folders=model_folders())
        assert form.offers_demo_model
        assert (form.initial["base_model"], form.initial["adapter"]) == ("demo-tiny-sd", "demo-tiny-lora")
        assert (form.initial["width"], form.initial["steps"]) == (128, 20)
        assert form.model_folders[0].label == "demo-tiny-sd (demo: random weights)"
    finally:
        shutil.rmtree(demo)
        shutil.rmtree(demo_adapter)
