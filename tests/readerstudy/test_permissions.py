"""Each role against each page and API endpoint: allowed gets the page, denied gets 401/403/404 and never data."""

import pytest
from django.urls import reverse

from readerstudy.services import reader_assign
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db

DENIED = {401, 403, 404}


@pytest.fixture
def world(study, reader, other_reader, coordinator, admin_user, client):
    session = reader_assign(study=study, reader=reader)
    other_study_session = None
    item = session.items.order_by("position").first()
    case = study.cases.first()
    return {
        "study": study,
        "session": session,
        "item": item,
        "case": case,
        "users": {"reader": reader, "other_reader": other_reader, "coordinator": coordinator, "admin": admin_user},
        "other": other_study_session,
    }


def client_for(client, world, role):
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


PAGES = [
    # (name, url builder, method, {role: expected status})
    ("home", lambda w: reverse("home"), "get", {"reader": 200, "other_reader": 200, "coordinator": 302, "admin": 302}),
    (
        "reading page",
        lambda w: reverse("reading_page", args=[w["session"].pk]),
        "get",
        {"reader": 200, "other_reader": 404, "coordinator": 404, "admin": 404},
    ),
    (
        "reading submit",
        lambda w: reverse("reading_submit", args=[w["session"].pk]),
        "post",
        {"reader": 422, "other_reader": 404, "coordinator": 404, "admin": 404},
    ),
    (
        "reading image",
        lambda w: reverse("reading_image", args=[w["item"].token]),
        "get",
        {"reader": 200, "other_reader": 404, "coordinator": 404, "admin": 404},
    ),
    (
        "study list",
        lambda w: reverse("study_list"),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "study new",
        lambda w: reverse("study_new"),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "study detail",
        lambda w: reverse("study_detail", args=[w["study"].pk]),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "study edit",
        lambda w: reverse("study_edit", args=[w["study"].pk]),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "case list",
        lambda w: reverse("case_list", args=[w["study"].pk]),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "case image",
        lambda w: reverse("case_image", args=[w["study"].pk, w["case"].pk]),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "case upload",
        lambda w: reverse("case_upload", args=[w["study"].pk]),
        "post",
        {"reader": 403, "other_reader": 403, "coordinator": 400, "admin": 400},
    ),
    (
        "folder import",
        lambda w: reverse("case_import_folder", args=[w["study"].pk]),
        "post",
        {"reader": 403, "other_reader": 403, "coordinator": 400, "admin": 400},
    ),
    (
        "assign readers",
        lambda w: reverse("readers_assign", args=[w["study"].pk]),
        "post",
        {"reader": 403, "other_reader": 403, "coordinator": 302, "admin": 302},
    ),
    (
        "remove reader",
        lambda w: reverse("reader_remove", args=[w["study"].pk, w["session"].pk]),
        "post",
        {"reader": 403, "other_reader": 403, "coordinator": 302, "admin": 302},
    ),
    (
        "plan a study",
        lambda w: reverse("study_plan", args=[w["study"].pk]),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "plan from typed-in components",
        lambda w: reverse("plan"),
        "get",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "api docs",
        lambda w: reverse("api_docs"),
        "get",
        {"reader": 200, "other_reader": 200, "coordinator": 200, "admin": 200},
    ),
]


@pytest.mark.parametrize("page", PAGES, ids=[p[0] for p in PAGES])
@pytest.mark.parametrize("role", ["anonymous", "reader", "other_reader", "coordinator", "admin"])
def test_page_permissions(world, client, page, role):
    name, url, method, expected = page
    response = getattr(client_for(client, world, role), method)(url(world))
    if role == "anonymous":
        redirected = response.status_code == 302 and "/accounts/login/" in response["Location"]
        assert redirected or response.status_code in {401, 403}
        return
    assert response.status_code == expected[role], (name, role, response.status_code)
    if response.status_code in DENIED:
        body = response.content.decode(errors="ignore")
        assert "synthetic-" not in body and "real-" not in body  # no file names
        assert "sha256" not in body


@pytest.mark.parametrize("role", ["reader", "other_reader", "coordinator"])
def test_django_admin_is_for_admins_only(world, client, role):
    response = client_for(client, world, role).get("/admin/readerstudy/case/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


ADMIN_CHANGELISTS = [
    "/admin/readerstudy/study/",
    "/admin/readerstudy/case/",
    "/admin/readerstudy/reading/",
    "/admin/generation/generationbatch/",
    "/admin/cleanup/cleanupjob/",
    "/admin/auth/user/",
]


@pytest.mark.parametrize("url", ADMIN_CHANGELISTS)
def test_admins_can_use_django_admin(world, client, url):
    # The admin fixture is a staff member of the admin group, not a superuser: the role itself must let them in.
    response = client_for(client, world, "admin").get(url)
    assert response.status_code == 200, url


def test_admins_see_every_model_on_the_django_admin_index(world, client):
    body = client_for(client, world, "admin").get("/admin/").content.decode()
    for url in ADMIN_CHANGELISTS:
        assert f'href="{url}"' in body, url


def test_readings_stay_read_only_for_admins(world, client):
    admin = client_for(client, world, "admin")
    reading_url = "/admin/readerstudy/reading/"
    assert admin.get(reading_url).status_code == 200
    assert admin.get(reading_url + "add/").status_code == 403


API = [
    ("GET", lambda w: "/api/studies/", {"reader": 200, "other_reader": 200, "coordinator": 200, "admin": 200}),
    ("POST", lambda w: "/api/studies/", {"reader": 403, "other_reader": 403, "coordinator": 400, "admin": 400}),
    (
        "GET",
        lambda w: f"/api/studies/{w['study'].pk}/",
        {"reader": 200, "other_reader": 404, "coordinator": 200, "admin": 200},
    ),
    (
        "PATCH",
        lambda w: f"/api/studies/{w['study'].pk}/",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "GET",
        lambda w: f"/api/studies/{w['study'].pk}/cases/",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "POST",
        lambda w: f"/api/studies/{w['study'].pk}/cases/",
        {"reader": 403, "other_reader": 403, "coordinator": 400, "admin": 400},
    ),
    (
        "GET",
        lambda w: f"/api/studies/{w['study'].pk}/progress/",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    (
        "POST",
        lambda w: f"/api/studies/{w['study'].pk}/assign/",
        {"reader": 403, "other_reader": 403, "coordinator": 400, "admin": 400},
    ),
    (
        "GET",
        lambda w: f"/api/studies/{w['study'].pk}/readings/",
        {"reader": 403, "other_reader": 403, "coordinator": 200, "admin": 200},
    ),
    ("GET", lambda w: "/api/sessions/", {"reader": 200, "other_reader": 200, "coordinator": 200, "admin": 200}),
    (
        "GET",
        lambda w: f"/api/sessions/{w['session'].pk}/",
        {"reader": 200, "other_reader": 404, "coordinator": 200, "admin": 200},
    ),
    (
        "GET",
        lambda w: f"/api/sessions/{w['session'].pk}/next/",
        {"reader": 200, "other_reader": 404, "coordinator": 404, "admin": 404},
    ),
    (
        "GET",
        lambda w: f"/api/sessions/{w['session'].pk}/readings/",
        {"reader": 200, "other_reader": 404, "coordinator": 404, "admin": 404},
    ),
    (
        "POST",
        lambda w: f"/api/sessions/{w['session'].pk}/readings/",
        {"reader": 400, "other_reader": 404, "coordinator": 404, "admin": 404},
    ),
    ("GET", lambda w: "/api/schema/", {"reader": 200, "other_reader": 200, "coordinator": 200, "admin": 200}),
]


@pytest.mark.parametrize("endpoint", API, ids=[f"{m} {i}" for i, (m, *_rest) in enumerate(API)])
@pytest.mark.parametrize("role", ["anonymous", "reader", "other_reader", "coordinator", "admin"])
def test_api_permissions(world, client, endpoint, role):
    method, url, expected = endpoint
    c = client_for(client, world, role)
    response = c.generic(method, url(world), data="{}", content_type="application/json")
    if role == "anonymous":
        assert response.status_code in {401, 403}
        return
    assert response.status_code == expected[role], (method, url(world), role, response.content[:300])


def test_reader_lists_only_assigned_studies_without_case_details(world, client, make_study):
    make_study(name="Someone else's study", seed_base=300)
    client.force_login(world["users"]["reader"])
    studies = client.get("/api/studies/").json()["results"]
    assert [s["name"] for s in studies] == [world["study"].name]
    assert set(studies[0]) == {
        "id",
        "name",
        "instructions",
        "status",
        "allow_revisit",
        "confidence_levels",
        "blank_screen_ms",
    }


def test_reader_sees_only_their_own_sessions(world, client):
    reader_assign(study=world["study"], reader=world["users"]["other_reader"])
    client.force_login(world["users"]["reader"])
    sessions = client.get("/api/sessions/").json()["results"]
    assert [s["reader"] for s in sessions] == ["reader"]


def test_draft_studies_are_invisible_to_readers(world, client):
    world["study"].status = "draft"
    world["study"].save()
    client.force_login(world["users"]["reader"])
    assert client.get(reverse("reading_page", args=[world["session"].pk])).status_code == 404
    assert client.get(reverse("reading_image", args=[world["item"].token])).status_code == 404
    assert client.get("/api/studies/").json()["results"] == []


def test_upload_by_reader_changes_nothing(world, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    before = world["study"].cases.count()
    client.force_login(world["users"]["reader"])
    upload = SimpleUploadedFile("x.png", png_bytes(4040), content_type="image/png")
    response = client.post(reverse("case_upload", args=[world["study"].pk]), {"files": [upload], "truth": "real"})
    assert response.status_code == 403
    assert world["study"].cases.count() == before
