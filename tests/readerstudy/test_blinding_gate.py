"""The gate at "Open for reading": a study whose blinding audit flags anything, or whose classes are more unequal
than 1:3, opens only with an acknowledgement and a written reason; every opening is stored with the audit's figures
and printed in the dashboard, the PDF and the JSON report. A refused opening changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from readerstudy.blinding import study_blinding_audit
from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import Study, StudyOpening
from readerstudy.services import reader_assign, study_update
from tests.readerstudy.helpers import answer_next

REASON = "Pilot study on the images we have; the imbalance is stated in the paper."


def flat_png(seed: int, size=(32, 32)) -> bytes:
    """A small, flat image: upscaled when served, so smoother and darker than the random textures."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    array = (rng.integers(0, 40, (size[1], size[0]))).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def unequal_study(make_study):
    """8 real : 2 synthetic, a draft: beyond 1:3."""
    return make_study(real=8, synthetic=2, status="draft")


@pytest.fixture
def confounded_study(make_study):
    """6 : 6, a draft, with synthetic images a trivial classifier spots (flat, dark, upscaled)."""
    study = make_study(real=6, synthetic=0, status="draft")
    cases_import(study=study, files=[IncomingFile(f"s{i}.png", flat_png(100 + i)) for i in range(6)], truth="synthetic")
    return study


def test_unequal_classes_need_an_acknowledgement_and_a_refusal_changes_nothing(unequal_study, coordinator):
    with pytest.raises(ValidationError) as refused:
        study_update(study=unequal_study, changed_by=coordinator, status=Study.Status.OPEN)
    assert "1:3" in str(refused.value.message_dict["blinding_acknowledged"])
    assert "blinding_reason" in refused.value.message_dict
    unequal_study.refresh_from_db()
    assert unequal_study.status == Study.Status.DRAFT
    assert not StudyOpening.objects.exists()

    # Ticked but without a reason: still refused.
    with pytest.raises(ValidationError) as refused:
        study_update(study=unequal_study, changed_by=coordinator, status=Study.Status.OPEN, blinding_acknowledged=True)
    assert set(refused.value.message_dict) == {"blinding_reason"}
    assert Study.objects.get(pk=unequal_study.pk).status == Study.Status.DRAFT

    study_update(
        study=unequal_study,
        changed_by=coordinator,
        status=Study.Status.OPEN,
        blinding_acknowledged=True,
        blinding_reason=REASON,
    )
    assert Study.objects.get(pk=unequal_study.pk).status == Study.Status.OPEN
    opening = StudyOpening.objects.get(study=unequal_study)
    assert opening.opened_by == coordinator and opening.needed_acknowledgement and opening.reason == REASON
    assert opening.audit["n_real"] == 8 and opening.audit["n_synthetic"] == 2
    assert any("1:3" in flag for flag in opening.audit["flags"])
    assert {channel["key"] for channel in opening.audit["channels"]} == {"http", "file", "content", "order", "sources"}


def test_a_balanced_clean_study_opens_without_an_acknowledgement(make_study, coordinator):
    study = make_study(real=4, synthetic=4, status="draft")  # too few to judge, and 1:1
    study_update(study=study, changed_by=coordinator, status=Study.Status.OPEN)
    opening = StudyOpening.objects.get(study=study)
    assert not opening.needed_acknowledgement and opening.reason == ""


def test_a_flagged_audit_blocks_opening_through_the_settings_page(client, confounded_study, coordinator):
    assert study_blinding_audit(study=confounded_study).flags  # the audit sees the giveaway
    client.force_login(coordinator)
    url = f"/studies/{confounded_study.pk}/edit/"
    form = client.get(url)
    assert b'id="blinding-gate"' in form.content
    data = {
        "name": confounded_study.name,
        "status": "open",
        "confidence_levels": 5,
        "quality_scoring": "all",
        "quality_sample_fraction": 0.25,
        "blank_screen_ms": 0,
        "max_run_length": 3,
        "repeat_cases": 0,
        "display_size": confounded_study.display_size,
        "crop_to_square": "on",
        "working_resolution": confounded_study.working_resolution or "",
        "practice_feedback": "on",
    }
    refused = client.post(url, data)
    assert refused.status_code == 200
    body = refused.content.decode()
    assert "The blinding audit flags" in body and "Content" in body
    assert Study.objects.get(pk=confounded_study.pk).status == Study.Status.DRAFT

    opened = client.post(url, {**data, "blinding_acknowledged": "on", "blinding_reason": REASON})
    assert opened.status_code == 302
    assert Study.objects.get(pk=confounded_study.pk).status == Study.Status.OPEN
    assert StudyOpening.objects.get(study=confounded_study).opened_by == coordinator


def test_the_api_applies_the_same_gate(client, unequal_study, coordinator):
    client.force_login(coordinator)
    url = f"/api/studies/{unequal_study.pk}/"
    refused = client.patch(url, {"status": "open"}, content_type="application/json")
    assert refused.status_code == 400
    assert "blinding_acknowledged" in refused.json()
    assert Study.objects.get(pk=unequal_study.pk).status == Study.Status.DRAFT
    opened = client.patch(
        url,
        {"status": "open", "blinding_acknowledged": True, "blinding_reason": REASON},
        content_type="application/json",
    )
    assert opened.status_code == 200, opened.content
    assert opened.json()["status"] == "open" and "blinding_reason" not in opened.json()


def test_the_admin_cannot_open_a_study_around_the_gate(client, unequal_study, admin_user):
    client.force_login(admin_user)  # the admin role, not a superuser
    page = client.get(f"/admin/readerstudy/study/{unequal_study.pk}/change/")
    assert page.status_code == 200
    assert b'name="status"' not in page.content  # shown read-only
    assert b'name="crop_to_square"' not in page.content


def test_the_opening_is_printed_in_the_dashboard_the_json_report_and_the_pdf(
    client, unequal_study, coordinator, reader, other_reader
):
    study_update(
        study=unequal_study,
        changed_by=coordinator,
        status=Study.Status.OPEN,
        blinding_acknowledged=True,
        blinding_reason=REASON,
    )
    client.force_login(coordinator)
    dashboard = client.get(f"/studies/{unequal_study.pk}/dashboard/").content.decode()
    assert "Blinding at opening" in dashboard and REASON in dashboard and "coord" in dashboard

    report = client.get(f"/api/studies/{unequal_study.pk}/report/").json()
    opening = report["blinding_at_opening"]
    assert opening["reason"] == REASON and opening["opened_by"] == "coord" and opening["needed_acknowledgement"]
    exported = json.loads(client.get(f"/studies/{unequal_study.pk}/exports/report.json").content)
    assert exported["blinding_at_opening"]["reason"] == REASON

    # The PDF has a report once there are readings: two readers read everything.
    for person in (reader, other_reader):
        session = reader_assign(study=unequal_study, reader=person)
        for _ in range(session.items.count()):
            answer_next(session)
    pdf = client.get(f"/studies/{unequal_study.pk}/exports/report.pdf")
    assert pdf.status_code == 200
    assert shutil.which("pdftotext"), "scripts/test.sh installs poppler-utils"
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf.content, capture_output=True, check=True).stdout
    assert b"Blinding at opening" in text and b"stated in the paper" in text


def test_opening_an_already_open_study_again_is_not_a_new_opening(make_study, coordinator, reader):
    study = make_study(real=8, synthetic=2, status="draft")
    study_update(study=study, changed_by=coordinator, status="open", blinding_acknowledged=True, blinding_reason=REASON)
    reader_assign(study=study, reader=reader)
    study_update(study=study, changed_by=coordinator, status="open", instructions="Read carefully.")
    assert StudyOpening.objects.filter(study=study).count() == 1


def test_a_study_cannot_be_created_open_around_the_gate(client, coordinator):
    from readerstudy.services import study_create

    with pytest.raises(ValidationError) as refused:
        study_create(created_by=coordinator, name="Straight to readers", status="open")
    assert "draft" in str(refused.value.message_dict["status"])
    client.force_login(coordinator)
    api = client.post(
        "/api/studies/", {"name": "Straight to readers", "status": "open"}, content_type="application/json"
    )
    assert api.status_code == 400 and "status" in api.json()
    assert not Study.objects.exists()
    form = client.get("/studies/new/").content.decode()
    assert 'value="open"' not in form
