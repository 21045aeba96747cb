"""Cleanup pages: who may open them, starting a job from the form, its live progress, and the review page's
decisions (htmx and plain POST)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from cleanup.models import CleanupItem, CleanupJob
from cleanup.ocr import tesseract_available
from cleanup.worker import cleanup_job_run
from readerstudy.services import reader_assign
from tests.cleanup.helpers import form_defaults, run_job
from tests.factories import PhantomBatchFactory, PhantomStudyFactory
from tests.readerstudy.helpers import answer_next

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("no_queue"),
    pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed"),
]


@pytest.fixture
def cleaned_job(coordinator):
    """A finished cleaning job over one labelled and one clean case."""
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "PORTABLE"), ("real", None)])
    return run_job(study, coordinator)


def every_page(job: CleanupJob) -> list[tuple[str, str, dict]]:
    """(method, url, data) of every cleanup page and action."""
    cleaned = job.items.get(changed=True)
    return [
        ("get", reverse("cleanup:job_list"), {}),
        ("get", reverse("cleanup:job_new", args=[job.study_id]), {}),
        ("post", reverse("cleanup:job_new", args=[job.study_id]), {"mode": "check", "scope": "all"}),
        ("get", reverse("cleanup:job_detail", args=[job.pk]), {}),
        ("post", reverse("cleanup:job_cancel", args=[job.pk]), {}),
        ("post", reverse("cleanup:job_resume", args=[job.pk]), {}),
        ("post", reverse("cleanup:job_accept_unchanged", args=[job.pk]), {}),
        ("get", reverse("cleanup:job_review", args=[job.pk]), {}),
        ("post", reverse("cleanup:item_decide", args=[cleaned.pk]), {"decision": "accept"}),
        ("get", reverse("cleanup:item_image", args=[cleaned.pk, "before"]), {}),
        ("get", reverse("cleanup:item_image", args=[cleaned.pk, "after"]), {}),
        ("get", reverse("cleanup:item_image", args=[cleaned.pk, "mask"]), {}),
    ]


def test_readers_get_403_and_visitors_the_login_page_everywhere(client, reader, cleaned_job):
    for method, url, data in every_page(cleaned_job):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    client.force_login(reader)
    for method, url, data in every_page(cleaned_job):
        assert getattr(client, method)(url, data).status_code == 403, url
    # Nothing was started, decided or accepted by those requests.
    assert CleanupJob.objects.count() == 1
    assert not CleanupItem.objects.exclude(review=CleanupItem.Review.PENDING).exists()
    assert "Cleanup" not in client.get(reverse("home")).content.decode()


@pytest.mark.parametrize("role", ["coordinator", "admin_user"])
def test_coordinators_and_admins_reach_every_page(client, role, request, cleaned_job):
    client.force_login(request.getfixturevalue(role))
    for method, url, data in every_page(cleaned_job):
        assert getattr(client, method)(url, data).status_code in (200, 302), url
    assert 'href="/cleanup/"' in client.get(reverse("study_list")).content.decode()  # the nav link


def test_the_form_starts_a_job_on_the_chosen_cases(client, coordinator, django_capture_on_commit_callbacks):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None), ("synthetic", None), ("real", None)])
    client.force_login(coordinator)
    page = client.get(reverse("cleanup:job_new", args=[study.pk]) + "?mode=check").content.decode()
    assert re.search(r'name="mode" value="check"[^>]*checked', page)  # ?mode=check preselects the check
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("cleanup:job_new", args=[study.pk]), {**form_defaults(), "scope": "real"})
    job = CleanupJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("cleanup:job_detail", args=[job.pk])
    assert len(queued) == 1  # the worker's message, sent once the job is committed
    assert sorted(job.items.values_list("case__truth", flat=True)) == ["real", "real"]
    assert job.scope == "real" and job.mode == "clean" and job.config["detector"] == "xray"

    chosen = study.cases.filter(truth="synthetic").get()
    client.post(
        reverse("cleanup:job_new", args=[study.pk]),
        {**form_defaults(), "scope": "selected", "cases": [chosen.pk], "mode": "check", "dilation_iterations": 1},
    )
    job = CleanupJob.objects.latest("created_at")
    assert list(job.items.values_list("case_id", flat=True)) == [chosen.pk] and job.mode == "check"
    assert job.config["dilation_iterations"] == 1


def test_the_form_names_what_cannot_run_and_starts_nothing(client, coordinator, monkeypatch, tmp_path):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", None)])
    client.force_login(coordinator)
    url = reverse("cleanup:job_new", args=[study.pk])
    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "none"))
    page = client.post(url, form_defaults()).content.decode()
    assert "Tesseract is not installed here" in page and "has-error" in page
    page = client.post(url, {**form_defaults(), "scope": "selected"}).content.decode()
    assert "There is no case to process: choose at least one." in page
    page = client.post(url, {**form_defaults(), "detector": "glyphs+bars", "segmenter": "sam"}).content.decode()
    assert "segmenter=&#x27;sam&#x27; needs sam_checkpoint" in page
    assert not CleanupJob.objects.exists()


def test_the_job_page_polls_until_the_job_is_done(client, coordinator):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", "PORTABLE"), ("real", None)])
    client.force_login(coordinator)
    client.post(reverse("cleanup:job_new", args=[study.pk]), {**form_defaults(), "verify": ""})
    job = CleanupJob.objects.get()
    url = reverse("cleanup:job_detail", args=[job.pk])
    queued = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" in queued and "Waiting for a worker" in queued and "0</strong> of 2 images" in queued
    cleanup_job_run(job_pk=job.pk)
    done = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in done and "2</strong> of 2 images" in done
    assert "<code>PORTABLE</code>" in done and "Clean, unchanged" in done and "Review 2 images" in done
    page = client.get(reverse("study_detail", args=[study.pk])).content.decode()
    assert f'href="/cleanup/jobs/{job.pk}/"' in page and "?mode=check" in page and "?mode=clean" in page


def test_the_review_page_shows_before_after_mask_and_the_boxes_text(client, coordinator, cleaned_job):
    client.force_login(coordinator)
    cleaned = cleaned_job.items.get(changed=True)
    page = client.get(reverse("cleanup:job_review", args=[cleaned_job.pk])).content.decode()
    # Cleaned images come first in the queue.
    assert f'data-item="{cleaned.pk}"' in page and "Image <strong>1</strong> of 2" in page
    for kind in ("before", "after", "mask"):
        assert reverse("cleanup:item_image", args=[cleaned.pk, kind]) in page
    assert "<code>PORTABLE</code>" in page and "js/compare.js" in page
    assert "Synthetic" not in page  # the class is hidden, so both classes are judged alike
    image = client.get(reverse("cleanup:item_image", args=[cleaned.pk, "mask"]))
    assert image["Content-Type"] == "image/png" and "Content-Disposition" not in image
    unchanged = cleaned_job.items.get(changed=False)
    assert client.get(reverse("cleanup:item_image", args=[unchanged.pk, "after"])).status_code == 404
    assert client.get(reverse("cleanup:item_image", args=[unchanged.pk, "thumbnail"])).status_code == 404


def test_deciding_with_htmx_swaps_in_the_next_image_to_review(client, coordinator, cleaned_job):
    client.force_login(coordinator)
    cleaned, unchanged = cleaned_job.items.get(changed=True), cleaned_job.items.get(changed=False)
    response = client.post(
        reverse("cleanup:item_decide", args=[cleaned.pk]), {"decision": "accept"}, HTTP_HX_REQUEST="true"
    )
    cleaned.refresh_from_db()
    assert cleaned.review == CleanupItem.Review.ACCEPTED
    assert f'data-item="{unchanged.pk}"' in response.content.decode()
    assert response["HX-Push-Url"] == reverse("cleanup:job_review", args=[cleaned_job.pk]) + f"?item={unchanged.pk}"
    response = client.post(reverse("cleanup:item_decide", args=[unchanged.pk]), {"decision": "reject"})
    assert response.status_code == 302  # without htmx: a redirect to the review page
    unchanged.refresh_from_db()
    assert unchanged.review == CleanupItem.Review.REJECTED
    bad = client.post(reverse("cleanup:item_decide", args=[unchanged.pk]), {"decision": "maybe"}, HTTP_HX_REQUEST="1")
    assert "Choose accept or reject." in bad.content.decode()


def test_a_refused_decision_is_shown_on_the_review_page(client, coordinator, reader):
    study = PhantomStudyFactory(created_by=coordinator, cases=[("real", "PORTABLE")], status="open")
    answer_next(reader_assign(study=study, reader=reader))
    item = run_job(study, coordinator).items.get()
    client.force_login(coordinator)
    response = client.post(reverse("cleanup:item_decide", args=[item.pk]), {"decision": "accept"}, HTTP_HX_REQUEST="1")
    body = response.content.decode()
    assert response.status_code == 200 and 'role="alert"' in body and "cannot change under readers" in body
    item.refresh_from_db()
    assert item.review == CleanupItem.Review.PENDING


def test_accept_all_unchanged_and_cancel_from_the_job_page(client, coordinator, cleaned_job):
    client.force_login(coordinator)
    response = client.post(reverse("cleanup:job_accept_unchanged", args=[cleaned_job.pk]), {"from": "review"})
    assert response["Location"] == reverse("cleanup:job_review", args=[cleaned_job.pk])
    assert cleaned_job.items.get(changed=False).review == CleanupItem.Review.ACCEPTED
    response = client.post(reverse("cleanup:job_cancel", args=[cleaned_job.pk]), follow=True)
    assert "The job is already done." in response.content.decode()
    response = client.post(reverse("cleanup:job_resume", args=[cleaned_job.pk]), follow=True)
    assert "The job is already done." in response.content.decode()


def test_a_generation_batch_is_cleaned_from_its_own_form(client, coordinator, reader):
    batch = PhantomBatchFactory(created_by=coordinator, texts=["AP"], status="running")
    url = reverse("cleanup:job_new_for_batch", args=[batch.pk])
    client.force_login(reader)
    assert client.get(url).status_code == 403 and client.post(url, form_defaults()).status_code == 403
    client.force_login(coordinator)
    page = client.get(url).content.decode()
    assert "as soon as the\n    batch has finished" in page and "Which cases" not in page
    assert f'href="/cleanup/batches/{batch.pk}/new/"' in client.get(reverse("cleanup:job_list")).content.decode()
    response = client.post(url, {**form_defaults(), "verify": ""})
    job = CleanupJob.objects.get()
    assert response["Location"] == reverse("cleanup:job_detail", args=[job.pk])
    assert (job.batch, job.study, job.scope) == (batch, None, "batch")
    page = client.get(response["Location"]).content.decode()
    assert "Waiting for the batch to finish (running)" in page and batch.name in page
    cleanup_job_run(job_pk=job.pk)  # still running: the job waits
    batch.status = "done"
    batch.save()
    cleanup_job_run(job_pk=job.pk)
    item = job.items.get()
    review = client.get(reverse("cleanup:job_review", args=[job.pk])).content.decode()
    assert "Batch image 1" in review and "enter studies cleaned" in review
    client.post(reverse("cleanup:item_decide", args=[item.pk]), {"decision": "accept"})
    item.refresh_from_db()
    assert item.review == CleanupItem.Review.ACCEPTED


def test_the_django_admin_lists_jobs_and_items_and_cancels_or_resumes_jobs(client, admin_user, cleaned_job):
    admin_user.is_superuser = True  # as the demo's admin accounts are
    admin_user.save()
    client.force_login(admin_user)
    item = cleaned_job.items.get(changed=True)
    for url in (
        reverse("admin:cleanup_cleanupjob_changelist"),
        reverse("admin:cleanup_cleanupjob_change", args=[cleaned_job.pk]),
        reverse("admin:cleanup_cleanupitem_changelist"),
        reverse("admin:cleanup_cleanupitem_change", args=[item.pk]),
    ):
        assert client.get(url).status_code == 200, url
    assert client.get(reverse("admin:cleanup_cleanupjob_add")).status_code == 403  # jobs start where they are checked
    queued = CleanupJob.objects.create(study=cleaned_job.study, created_by=admin_user, total=0)
    changelist = reverse("admin:cleanup_cleanupjob_changelist")
    response = client.post(
        changelist, {"action": "resume_jobs", "_selected_action": [queued.pk, cleaned_job.pk]}, follow=True
    )
    assert "1 job(s) sent to a worker again." in response.content.decode()
    response = client.post(
        changelist, {"action": "cancel_jobs", "_selected_action": [queued.pk, cleaned_job.pk]}, follow=True
    )
    assert "1 job(s) cancelled." in response.content.decode()
    queued.refresh_from_db()
    cleaned_job.refresh_from_db()
    assert (queued.status, cleaned_job.status) == ("cancelled", "done")
