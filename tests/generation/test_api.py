"""The generation REST API: permissions per role and endpoint, starting (checked like the form), watching, listing
images, cancelling and adding to a study; and its OpenAPI schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from generation.models import GenerationBatch
from generation.worker import batch_run
from readerstudy.models import Case

pytestmark = [pytest.mark.ml, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def model_roots(settings, tiny_model_dir: Path, tiny_peft_adapter_dir: Path) -> None:
    settings.MODEL_ROOT = tiny_model_dir.parent
    settings.MODEL_EXTRA_ROOTS = [tiny_peft_adapter_dir.parent]
    settings.ML_CPU_THREADS = 1


@pytest.fixture
def body(tiny_model_dir: Path) -> dict:
    return {
        "base_model": tiny_model_dir.name,
        "template": "view_position = PA. {finding}",
        "template_fields": {"finding": "2 x No findings, 2 x small right pleural effusion"},
        "steps": 4,
        "width": 64,
        "height": 64,
        "base_seed": 100,
    }


@pytest.fixture
def api(client, coordinator, django_capture_on_commit_callbacks):
    """A coordinator's client whose started batches are queued but not sent to a broker."""
    client.force_login(coordinator)

    def create(payload: dict):
        with django_capture_on_commit_callbacks(execute=False):
            return client.post(reverse("generation-batch-list"), payload, content_type="application/json")

    client.create = create
    return client


def test_start_watch_list_images_and_add_to_study(api, body, make_study):
    response = api.create(body)
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["status"] == "queued" and (created["total"], created["done"], created["pending"]) == (4, 0, 4)
    assert created["page_url"].endswith(f"/generation/batches/{created['id']}/")
    batch_run(batch_pk=created["id"])

    detail = api.get(reverse("generation-batch-detail", args=[created["id"]])).json()
    assert (detail["status"], detail["done"], detail["failed"], detail["percent"]) == ("done", 4, 0, 100)
    images = api.get(reverse("generation-batch-images", args=[created["id"]])).json()["results"]
    # Interleaved: No findings, effusion, No findings, effusion; seeds from the base seed.
    assert [(image["index"], image["seed"]) for image in images] == [(0, 100), (1, 101), (2, 102), (3, 103)]
    assert images[1]["prompt"] == "view_position = PA. small right pleural effusion"
    assert images[0]["png_url"].endswith(f"/generation/batches/{created['id']}/images/0.png")
    assert images[0]["dicom_url"] is None and images[0]["provenance"]["seed"] == 100
    assert api.get(images[0]["png_url"]).status_code == 200

    study = make_study(real=1, synthetic=0)
    url = reverse("generation-batch-add-to-study", args=[created["id"]])
    first = api.post(url, {"study": study.pk, "indices": [0, 3]}, content_type="application/json").json()
    assert first == {"study": study.pk, "summary": "2 added", "added": [0, 3], "already_added": [], "refused": []}
    second = api.post(url, {"study": study.pk}, content_type="application/json").json()
    assert (second["added"], second["already_added"]) == ([1, 2], [0, 3])
    assert Case.objects.filter(study=study, truth="synthetic", source="generation").count() == 4


def test_explicit_seeds_and_a_prompt_list(api, body):
    payload = {**body, "prompts": ["a", "b"], "images_per_prompt": 2, "seeds": [5, 6, 7, 8]}
    del payload["template"], payload["template_fields"]
    batch = GenerationBatch.objects.get(pk=api.create(payload).json()["id"])
    assert list(batch.images.order_by("index").values_list("prompt", "seed")) == [
        ("a", 5),
        ("a", 6),
        ("b", 7),
        ("b", 8),
    ]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"base_model": "missing"}, "base_model", "does not exist"),
        ({"adapter": "/etc"}, "adapter", "is not inside a model folder root"),
        ({"width": 100}, "width", "multiple of 8"),
        ({"scheduler": "warp-drive"}, "scheduler", "Unknown scheduler 'warp-drive'"),
        ({"template": "{finding} {view}"}, "template", "unknown field(s) {view}"),
        ({"seeds": [1, 2]}, "seeds", "2 seeds for 4 prompts"),
        ({"prompts": ["x"]}, "prompts", "Give either `prompts` or `template`"),
    ],
)
def test_bad_requests_are_400_by_field_and_create_nothing(api, body, changes, field, words):
    response = api.create({**body, **changes})
    assert response.status_code == 400
    assert words in " ".join(response.json()[field]), response.json()
    assert not GenerationBatch.objects.exists()


def test_cancel_through_the_api(api, body):
    created = api.create(body).json()
    url = reverse("generation-batch-cancel", args=[created["id"]])
    assert api.post(url).json()["status"] == "cancelled"
    assert batch_run(batch_pk=created["id"]).status == "cancelled"
    assert api.get(reverse("generation-batch-detail", args=[created["id"]])).json()["done"] == 0


def test_model_folders_lists_models_and_adapters(api, tiny_model_dir, tiny_peft_adapter_dir):
    folders = api.get(reverse("generation-batch-model-folders")).json()
    assert {"path": str(tiny_model_dir.resolve()), "kind": "model", "is_demo": False} in folders
    assert {"path": str(tiny_peft_adapter_dir.resolve()), "kind": "adapter", "is_demo": False} in folders


@pytest.mark.parametrize("role", ["anonymous", "reader", "coordinator", "admin"])
def test_permissions_per_role_for_every_endpoint(
    client, role, reader, coordinator, admin_user, body, make_study, django_capture_on_commit_callbacks
):
    study = make_study(real=1, synthetic=0)
    client.force_login(coordinator)
    with django_capture_on_commit_callbacks(execute=False):
        batch_id = client.post(reverse("generation-batch-list"), body, content_type="application/json").json()["id"]
    client.logout()
    users = {"reader": reader, "coordinator": coordinator, "admin": admin_user}
    if role != "anonymous":
        client.force_login(users[role])
    endpoints = [
        ("get", reverse("generation-batch-list"), None),
        ("get", reverse("generation-batch-detail", args=[batch_id]), None),
        ("get", reverse("generation-batch-images", args=[batch_id]), None),
        ("get", reverse("generation-batch-model-folders"), None),
        ("post", reverse("generation-batch-add-to-study", args=[batch_id]), {"study": study.pk}),
        ("post", reverse("generation-batch-cancel", args=[batch_id]), None),
        ("post", reverse("generation-batch-list"), body),
    ]
    allowed = role in {"coordinator", "admin"}
    for method, url, payload in endpoints:
        with django_capture_on_commit_callbacks(execute=False):
            response = getattr(client, method)(url, payload, content_type="application/json")
        if allowed:
            assert response.status_code in {200, 201}, (role, url, response.content)
        else:
            assert response.status_code in {401, 403}, (role, url)
            assert "results" not in response.json() and "status" not in response.json()
    expected = {"coordinator": 2, "admin": 2}.get(role, 1)
    assert GenerationBatch.objects.count() == expected
    assert GenerationBatch.objects.get(pk=batch_id).status == ("cancelled" if allowed else "queued")


def test_the_schema_documents_the_generation_endpoints(api):
    schema = api.get(reverse("api_schema"), HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    for path in (
        "/api/generation/batches/",
        "/api/generation/batches/{id}/",
        "/api/generation/batches/{id}/images/",
        "/api/generation/batches/{id}/cancel/",
        "/api/generation/batches/{id}/add-to-study/",
        "/api/generation/batches/model-folders/",
    ):
        assert path in paths, path
    create = paths["/api/generation/batches/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/BatchCreateRequest")
    assert "201" in create["responses"]
