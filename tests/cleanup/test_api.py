"""The cleanup REST API: the same permissions and services as the pages, errors as 400/409 with the reason."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cleanup.models import CleanupItem, CleanupJob
from cleanup.ocr import tesseract_available
from cleanup.worker import cleanup_job_run
from readerstudy.services import reader_assign
from tests.cleanup.helpers import run_job
from tests.factories import PhantomBatchFactory, PhantomStudyFactory
from tests.readerstudy.helpers import answer_next

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("no_queue"),
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]


@pytest.fixture
def api():
    return APIClient()


def test_readers_and_visitors_are_refused_everywhere(api, reader, coordinator):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "AP"), ("real", None)])
    job = run_job(study, coordinator)
    item = job.items.get(changed=True)
    calls = [
        ("get", "/api/cleanup/jobs/", None),
        ("post", "/api/cleanup/jobs/", {"study": study.pk}),
        ("get", f"/api/cleanup/jobs/{job.pk}/", None),
        ("get", f"/api/cleanup/jobs/{job.pk}/items/", None),
        ("post", f"/api/cleanup/jobs/{job.pk}/cancel/", None),
        ("post", f"/api/cleanup/jobs/{job.pk}/resume/", None),
        ("post", f"/api/cleanup/jobs/{job.pk}/accept-unchanged/", None),
        ("get", f"/api/cleanup/items/{item.pk}/", None),
        ("post", f"/api/cleanup/items/{item.pk}/accept/", None),
        ("post", f"/api/cleanup/items/{item.pk}/reject/", None),
    ]
    for method, url, data in calls:
        assert getattr(api, method)(url, data, format="json").status_code in (401, 403), url
    api.force_authenticate(reader)
    for method, url, data in calls:
        assert getattr(api, method)(url, data, format="json").status_code == 403, url
    assert CleanupJob.objects.count() == 1 and job.items.filter(review="pending").count() == 2


def test_start_watch_review_a_job(api, coordinator, django_capture_on_commit_callbacks):
    study = PhantomStudyFactory(
        created_by=coordinator, cases=[("synthetic", "PORTABLE"), ("real", None), ("synthetic", None)]
    )
    api.force_authenticate(coordinator)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api.post(
            "/api/cleanup/jobs/",
            {"study": study.pk, "mode": "clean", "scope": "synthetic", "config": {"verify": False, "seed": 3}},
            format="json",
        )
    assert response.status_code == 201, response.data
    assert len(queued) == 1
    body = response.data
    assert (body["status"], body["total"], body["scope"]) == ("queued", 2, "synthetic")
    assert body["config"]["seed"] == 3 and body["config"]["verify"] is False
    assert body["page_url"].endswith(f"/cleanup/jobs/{body['id']}/") and body["review_url"].endswith("/review/")

    cleanup_job_run(job_pk=body["id"])
    job = api.get(f"/api/cleanup/jobs/{body['id']}/").data
    assert job["status"] == "done"
    assert job["progress"] == {
        "processed": 2,
        "pending": 0,
        "percent": 100,
        "done": 2,
        "failed": 0,
        "cleaned": 1,
        "unchanged": 1,
        "with_text": 1,
        "accepted": 0,
        "rejected": 0,
        "to_review": 2,
    }
    items = api.get(f"/api/cleanup/jobs/{body['id']}/items/").data["results"]
    assert [(item["truth"], item["outcome"]) for item in items] == [
        ("synthetic", "cleaned"),
        ("synthetic", "unchanged"),
    ]
    cleaned = items[0]
    assert [box["text"] for box in cleaned["result"]["boxes"]] == ["PORTABLE"]
    assert cleaned["mask_url"].endswith(f"/cleanup/items/{cleaned['id']}/mask.png") and items[1]["mask_url"] is None

    accepted = api.post(f"/api/cleanup/items/{cleaned['id']}/accept/").data
    assert accepted["review"] == "accepted" and accepted["reviewed_by"] == "coord"
    assert CleanupItem.objects.get(pk=cleaned["id"]).case.provenance["cleanup"]["item"] == cleaned["id"]
    assert api.post(f"/api/cleanup/jobs/{body['id']}/accept-unchanged/").data == {"accepted": 1, "refused": []}
    assert api.get("/api/cleanup/jobs/", {"study": study.pk}).data["results"][0]["progress"]["accepted"] == 2


def test_what_cannot_be_done_is_a_400_or_409_with_the_reason(api, coordinator, reader, monkeypatch, tmp_path):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE")], status="open")
    other = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", None)], name="Other")
    api.force_authenticate(coordinator)

    foreign = api.post(
        "/api/cleanup/jobs/",
        {"study": study.pk, "scope": "selected", "cases": [other.cases.get().pk]},
        format="json",
    )
    assert foreign.status_code == 400 and "Not cases of this study" in foreign.data["cases"][0]
    bad_config = api.post("/api/cleanup/jobs/", {"study": study.pk, "config": {"inpainter": "sd"}}, format="json")
    assert bad_config.status_code == 400 and "needs inpainting_model" in bad_config.data["config"][0]
    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "none"))
    no_ocr = api.post("/api/cleanup/jobs/", {"study": study.pk}, format="json")
    assert no_ocr.status_code == 400 and "Tesseract is not installed" in no_ocr.data["errors"]["detector"]
    assert not CleanupJob.objects.exists()
    monkeypatch.delenv("TESSERACT_CMD")

    job = run_job(study, coordinator)
    answer_next(reader_assign(study=study, reader=reader))
    refused = api.post(f"/api/cleanup/items/{job.items.get().pk}/accept/")
    assert refused.status_code == 409 and "cannot change under readers" in refused.data["detail"]
    assert api.post(f"/api/cleanup/jobs/{job.pk}/cancel/").data["status"] == "done"  # finished: left as it is
    resumed = api.post(f"/api/cleanup/jobs/{job.pk}/resume/")
    assert resumed.status_code == 409 and resumed.data["detail"] == "The job is already done."


def test_a_generation_batch_is_cleaned_through_the_api(api, coordinator):
    batch = PhantomBatchFactory(created_by=coordinator, texts=["AP", None])
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    api.force_authenticate(coordinator)
    both = api.post("/api/cleanup/jobs/", {"study": study.pk, "batch": batch.pk}, format="json")
    assert both.status_code == 400 and both.data["study"] == ["Give either a study or a generation batch."]
    check = api.post("/api/cleanup/jobs/", {"batch": batch.pk, "mode": "check"}, format="json")
    assert check.status_code == 400 and "cleaned as a whole" in check.data["batch"][0]
    created = api.post("/api/cleanup/jobs/", {"batch": batch.pk, "config": {"verify": False}}, format="json")
    assert created.status_code == 201 and (created.data["batch"], created.data["study"]) == (batch.pk, None)
    assert created.data["total"] == 2  # the batch has finished: its images are items at once
    cleanup_job_run(job_pk=created.data["id"])
    items = api.get(f"/api/cleanup/jobs/{created.data['id']}/items/").data["results"]
    assert [(item["truth"], item["outcome"], item["case"]) for item in items] == [
        ("synthetic", "cleaned", None),
        ("synthetic", "unchanged", None),
    ]
    assert api.post(f"/api/cleanup/items/{items[0]['id']}/reject/").data["review"] == "rejected"
    assert [job["id"] for job in api.get("/api/cleanup/jobs/", {"batch": batch.pk}).data["results"]] == [
        created.data["id"]
    ]


def test_the_schema_documents_the_cleanup_endpoints(api, coordinator):
    api.force_authenticate(coordinator)
    schema = api.get("/api/schema/", {"format": "json"}).json()
    assert {
        "/api/cleanup/jobs/",
        "/api/cleanup/jobs/{id}/cancel/",
        "/api/cleanup/jobs/{id}/resume/",
        "/api/cleanup/jobs/{id}/items/",
        "/api/cleanup/jobs/{id}/accept-unchanged/",
        "/api/cleanup/items/{id}/accept/",
        "/api/cleanup/items/{id}/reject/",
    } <= set(schema["paths"])
