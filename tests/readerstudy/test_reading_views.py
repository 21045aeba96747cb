"""The reading screen over HTTP: htmx submit-and-next, resume, revisit, practice feedback, blinded images."""

import re
import uuid

import pytest
from django.urls import reverse

from imaging.png import read_png_chunks
from readerstudy.models import Reading
from readerstudy.selectors import session_current_item
from readerstudy.services import reader_assign
from tests.readerstudy.helpers import answer_next

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def form_data(item, **overrides):
    data = {
        "item": item.token,
        "submission_id": str(uuid.uuid4()),
        "call": "synthetic",
        "confidence": "4",
        "anatomy": "3",
        "style": "4",
        "artifacts": "5",
        "active_ms": "5400",
    }
    data.update(overrides)
    return data


@pytest.fixture
def reader_client(client, reader):
    client.force_login(reader)
    return client


def test_the_page_shows_the_first_case_with_progress(reader_client, session):
    response = reader_client.get(reverse("reading_page", args=[session.pk]))
    body = response.content.decode()
    first = session.items.order_by("position").first()
    assert response.status_code == 200
    assert f"1 of {session.items.count()}" in body
    assert reverse("reading_image", args=[first.token]) in body
    second = session.items.order_by("position")[1]
    assert f'data-next-image="{reverse("reading_image", args=[second.token])}"' in body


def test_htmx_submit_records_then_returns_the_next_case(reader_client, session):
    first = session_current_item(session=session)
    response = reader_client.post(reverse("reading_submit", args=[session.pk]), form_data(first), **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="case"')  # the partial, not a whole page
    assert "2 of" in body
    reading = Reading.objects.get()
    assert (reading.call, reading.confidence, reading.active_ms) == ("synthetic", 4, 5400)
    second = session_current_item(session=session)
    assert reverse("reading_image", args=[second.token]) in body


def test_plain_form_submit_redirects_to_the_next_case(reader_client, session):
    first = session_current_item(session=session)
    response = reader_client.post(reverse("reading_submit", args=[session.pk]), form_data(first))
    assert response.status_code == 302
    assert Reading.objects.count() == 1


def test_double_submit_records_once_and_shows_the_next_case(reader_client, session):
    first = session_current_item(session=session)
    data = form_data(first)
    url = reverse("reading_submit", args=[session.pk])
    one = reader_client.post(url, data, **HTMX)
    two = reader_client.post(url, data, **HTMX)
    assert Reading.objects.count() == 1
    assert "2 of" in one.content.decode() and "2 of" in two.content.decode()


def test_missing_fields_are_shown_and_nothing_is_saved(reader_client, session):
    first = session_current_item(session=session)
    data = form_data(first)
    del data["call"]
    del data["anatomy"]
    response = reader_client.post(reverse("reading_submit", args=[session.pk]), data, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Choose real or synthetic" in body
    assert Reading.objects.count() == 0
    assert reverse("reading_image", args=[first.token]) in body  # still on the same case
    assert data["submission_id"] in body  # the retry keeps its idempotency token


def test_resume_exactly_where_the_reader_left_off(reader_client, session):
    for _ in range(3):
        answer_next(session)
    response = reader_client.get(reverse("reading_page", args=[session.pk]))
    fourth = session.items.order_by("position")[3]
    assert reverse("reading_image", args=[fourth.token]) in response.content.decode()
    assert f"4 of {session.items.count()}" in response.content.decode()


def test_going_back_is_refused_unless_allowed(reader_client, session):
    answer_next(session, call="synthetic")
    response = reader_client.get(reverse("reading_page", args=[session.pk]) + "?position=0")
    second = session.items.order_by("position")[1]
    assert reverse("reading_image", args=[second.token]) in response.content.decode()
    assert "Previous" not in response.content.decode()


def test_going_back_shows_the_earlier_answer_when_allowed(client, make_study, reader):
    study = make_study(allow_revisit=True)
    session = reader_assign(study=study, reader=reader)
    answer_next(session, call="synthetic", confidence=5)
    client.force_login(reader)
    response = client.get(reverse("reading_page", args=[session.pk]) + "?position=0", **HTMX)
    body = response.content.decode()
    first = session.items.order_by("position").first()
    assert reverse("reading_image", args=[first.token]) in body
    assert re.search(r'value="synthetic" id="call-synthetic" checked', body)
    assert re.search(r'value="5" id="confidence-5" checked', body)
    assert "Save change" in body
    # Skipping ahead of the first unanswered case is not possible.
    ahead = client.get(reverse("reading_page", args=[session.pk]) + "?position=5").content.decode()
    second = session.items.order_by("position")[1]
    assert reverse("reading_image", args=[second.token]) in ahead


def test_practice_feedback_tells_the_truth_of_practice_cases_only(client, make_study, reader):
    study = make_study(practice=1)
    session = reader_assign(study=study, reader=reader)
    client.force_login(reader)
    practice = session_current_item(session=session)
    assert practice.is_practice
    body = client.post(
        reverse("reading_submit", args=[session.pk]), form_data(practice, call="synthetic"), **HTMX
    ).content.decode()
    assert "Practice feedback" in body and "that image was <strong>real</strong>" in body
    main = session_current_item(session=session)
    body = client.post(reverse("reading_submit", args=[session.pk]), form_data(main), **HTMX).content.decode()
    assert "Practice feedback" not in body


def test_finished_session_says_so(reader_client, session):
    for _ in range(session.items.count()):
        answer_next(session)
    body = reader_client.get(reverse("reading_page", args=[session.pk])).content.decode()
    assert "All done" in body


def normalised_page(body: str) -> str:
    """The page with what legitimately differs between cases (tokens, counters) blanked out."""
    body = re.sub(r"/img/[A-Za-z0-9_-]{22}", "/img/TOKEN", body)
    body = re.sub(r'name="item" value="[^"]+"', 'name="item" value="TOKEN"', body)
    body = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", body)
    body = re.sub(r'csrfmiddlewaretoken" value="[^"]+"', 'csrfmiddlewaretoken" value="CSRF"', body)
    body = re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": "CSRF"', body)
    body = re.sub(r'data-position="\d+"', 'data-position="N"', body)
    body = re.sub(r"\d+ of \d+", "N of M", body)
    body = re.sub(r'value="\d+"></progress>', 'value="N"></progress>', body)
    return body.replace('data-next-image=""', 'data-next-image="/img/TOKEN"')


def test_reading_pages_are_identical_for_real_and_synthetic_cases(reader_client, session):
    """Apart from tokens and counters, every case's page is the same bytes: nothing can reveal the class."""
    study = session.study
    secrets = {case.label for case in study.cases.all()} | {"gen-a"}
    secrets |= {case.original_sha256[:16] for case in study.cases.all()}
    pages = {"real": set(), "synthetic": set()}
    for _ in range(session.items.count()):
        item = session_current_item(session=session)
        body = reader_client.get(reverse("reading_page", args=[session.pk])).content.decode()
        for secret in secrets:
            assert secret not in body
        pages[item.case.truth].add(normalised_page(body))
        answer_next(session)
    assert len(pages["real"]) == 1
    assert pages["real"] == pages["synthetic"]


def test_served_images_are_identical_in_form_whatever_their_class(reader_client, session):
    headers_by_class: dict[str, set] = {"real": set(), "synthetic": set()}
    shapes = set()
    for item in session.items.select_related("case"):
        response = reader_client.get(reverse("reading_image", args=[item.token]))
        data = b"".join(response.streaming_content)
        assert [c.type for c in read_png_chunks(data)] == ["IHDR", "IDAT", "IEND"]
        shapes.add(data[16:26])  # width, height, bit depth, colour type from IHDR
        kept = {(key, value) for key, value in response.headers.items() if key not in {"Content-Length"}}
        headers_by_class[item.case.truth].add(frozenset(kept))
    assert len(shapes) == 1
    assert headers_by_class["real"] == headers_by_class["synthetic"]
    assert len(headers_by_class["real"]) == 1
    header_names = {k for k, _ in next(iter(headers_by_class["real"]))}
    assert not header_names & {"ETag", "Last-Modified", "Content-Disposition"}


def test_image_tokens_are_per_reader(study, reader, other_reader):
    first = reader_assign(study=study, reader=reader)
    second = reader_assign(study=study, reader=other_reader)
    tokens_a = set(first.items.values_list("token", flat=True))
    tokens_b = set(second.items.values_list("token", flat=True))
    assert not tokens_a & tokens_b
    assert {len(t) for t in tokens_a | tokens_b} == {22}


def test_api_reading_loop(client, session, reader):
    client.force_login(reader)
    next_item = client.get(f"/api/sessions/{session.pk}/next/").json()
    assert next_item["done"] is False and next_item["number"] == 1
    assert set(next_item) == {"done", "item", "position", "is_practice", "number", "of", "image_url", "asks_quality"}
    payload = {
        "item": next_item["item"],
        "submission_id": str(uuid.uuid4()),
        "call": "real",
        "confidence": 2,
        "anatomy": 3,
        "style": 3,
        "artifacts": 4,
        "flags": ["noise"],
    }
    created = client.post(f"/api/sessions/{session.pk}/readings/", payload, content_type="application/json")
    assert created.status_code == 201 and created.json()["outcome"] == "created"
    again = client.post(f"/api/sessions/{session.pk}/readings/", payload, content_type="application/json")
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    changed = client.post(
        f"/api/sessions/{session.pk}/readings/",
        {**payload, "submission_id": str(uuid.uuid4()), "call": "synthetic"},
        content_type="application/json",
    )
    assert changed.status_code == 403  # answers are locked in this study
    readings = client.get(f"/api/sessions/{session.pk}/readings/").json()
    assert len(readings) == 1 and readings[0]["call"] == "real" and "truth" not in readings[0]
    image = client.get(next_item["image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert client.get(f"/api/sessions/{session.pk}/next/").json()["number"] == 2


def test_api_validation_errors_name_the_fields(client, session, reader):
    client.force_login(reader)
    item = client.get(f"/api/sessions/{session.pk}/next/").json()["item"]
    response = client.post(
        f"/api/sessions/{session.pk}/readings/",
        {"item": item, "submission_id": str(uuid.uuid4()), "call": "real", "confidence": 3},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"anatomy", "style", "artifacts"}
    assert Reading.objects.count() == 0


def test_openapi_schema_describes_the_endpoints(client, coordinator):
    client.force_login(coordinator)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in [
        "/api/studies/",
        "/api/studies/{id}/cases/",
        "/api/studies/{id}/assign/",
        "/api/sessions/{id}/next/",
        "/api/sessions/{id}/readings/",
    ]:
        assert path in schema["paths"], path


def test_a_missing_image_file_is_a_404_not_a_server_error(reader_client, session):
    item = session.items.select_related("case").first()
    item.case.image.storage.delete(item.case.image.name)
    assert reader_client.get(reverse("reading_image", args=[item.token])).status_code == 404
