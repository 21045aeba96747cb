"""What a reader's browser receives says nothing about the class: the demo study built from the shared chest X-rays,
read end to end over real HTTP (a live server, httpx, the reader's own session cookie), gives every image response,
prefetched or shown, practice and repeats included, the same Content-Length, the same body length and the same
headers. The check is independent of the audit: its own HTTP client, its own AUC, truth looked up afterwards."""

from __future__ import annotations

import math
import random
import re
import statistics
import time

import httpx
import pytest
from django.core.management import call_command

from readerstudy.blinding import study_blinding_audit
from readerstudy.models import Case, ReaderSession, SessionItem, Study
from tests.conftest import CXR_DIR

IMAGE_URL = re.compile(r'(?:src|data-next-image)="(/img/[^"]+)"')
FIELD = re.compile(r'name="(item|submission_id)" value="([^"]+)"')
IGNORED_HEADERS = {"date"}  # the clock, not the image


def mann_whitney_auc(positives: list[float], negatives: list[float]) -> float:
    """P(X_synthetic > X_real) + 0.5 P(tie), by counting pairs (written here, not imported from the project)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


@pytest.fixture
def demo_study(transactional_db, settings):
    if not (CXR_DIR / "real").is_dir():
        pytest.fail(f"The shared chest X-rays are missing at {CXR_DIR}.")
    call_command(
        "demo",
        real_dir=[CXR_DIR / "real", CXR_DIR / "dicom"],
        synthetic_dir=[CXR_DIR / "synthetic"],
        no_demo_model=True,
        verbosity=0,
    )
    return Study.objects.get(name__startswith="Demo")


def read_as_reader(base_url: str, cookies: dict, session: ReaderSession) -> list[dict]:
    """Read every case as the browser does: the page (htmx partial after each submit), the shown image, the
    prefetched next image. Returns one record per image response."""
    responses = []
    with httpx.Client(base_url=base_url, cookies=cookies, timeout=30) as http:
        page = http.get(f"/read/{session.pk}/")
        csrf = http.cookies.get("csrftoken")
        for _ in range(session.items.count()):
            assert page.status_code == 200, page.text[:500]
            for url in IMAGE_URL.findall(page.text):
                image = http.get(url)
                assert image.status_code == 200
                responses.append(
                    {
                        "token": url.rsplit("/", 1)[1],
                        "content_length": int(image.headers["content-length"]),
                        "body": len(image.content),
                        "headers": tuple(
                            sorted((k, v) for k, v in image.headers.items() if k.lower() not in IGNORED_HEADERS)
                        ),
                    }
                )
            fields = dict(FIELD.findall(page.text))
            answer = {**fields, "call": "real", "confidence": "3", "active_ms": "1000"}
            answer.update({"anatomy": "3", "style": "3", "artifacts": "3"})
            page = http.post(
                f"/read/{session.pk}/submit/",
                data=answer,
                headers={"HX-Request": "true", "X-CSRFToken": csrf, "Referer": base_url},
            )
    return responses


def fetch_times(base_url: str, cookies: dict, tokens: list[str], *, rounds: int) -> dict[str, float]:
    """Median seconds to fetch each image, over `rounds` passes in a shuffled order (so drift hits both classes)."""
    rng = random.Random(0)
    seconds: dict[str, list[float]] = {token: [] for token in tokens}
    with httpx.Client(base_url=base_url, cookies=cookies, timeout=30) as http:
        for _ in range(rounds):
            order = list(tokens)
            rng.shuffle(order)
            for token in order:
                started = time.perf_counter()
                assert http.get(f"/img/{token}").status_code == 200
                seconds[token].append(time.perf_counter() - started)
    return {token: statistics.median(values) for token, values in seconds.items()}


def test_the_demo_read_over_http_gives_every_image_the_same_length_and_headers(demo_study, live_server, client):
    session = demo_study.sessions.get(reader__username="reader")
    client.force_login(session.reader)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    responses = read_as_reader(live_server.url, cookies, session)

    truth_of = {
        item.token: item.case.truth for item in SessionItem.objects.filter(session=session).select_related("case")
    }
    # Every case was shown, and all but the first were also prefetched.
    assert {r["token"] for r in responses} == set(truth_of)
    assert session.items.filter(reading__isnull=False).count() == session.items.count()

    lengths = {r["content_length"] for r in responses}
    assert len(lengths) == 1, f"served images differ in Content-Length: {sorted(lengths)}"
    assert {r["body"] for r in responses} == lengths
    assert len({r["headers"] for r in responses}) == 1
    synthetic = [r for r in responses if truth_of[r["token"]] == Case.Truth.SYNTHETIC]
    real = [r for r in responses if truth_of[r["token"]] == Case.Truth.REAL]
    assert synthetic and real
    for feature in ("content_length", "body"):
        assert mann_whitney_auc([r[feature] for r in synthetic], [r[feature] for r in real]) == 0.5
    # Time: every image fetched again in shuffled rounds, the median per image; its AUC for the class within the
    # 99.9% band of the null (|AUC - 0.5| < 3.29 SE0, SE0 = sqrt((n1 + n0 + 1) / (12 n1 n0)), Mann-Whitney under
    # H0). Loopback timings on a busy 2-core box are noisy, so this catches only a gross difference; the exact
    # checks above are what close the channel.
    times = fetch_times(live_server.url, cookies, list(truth_of), rounds=3)
    synthetic_times = [times[token] for token, truth in truth_of.items() if truth == Case.Truth.SYNTHETIC]
    real_times = [times[token] for token, truth in truth_of.items() if truth == Case.Truth.REAL]
    n1, n0 = len(synthetic_times), len(real_times)
    bound = 3.29 * math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
    assert abs(mann_whitney_auc(synthetic_times, real_times) - 0.5) < bound

    # The study page's own audit agrees: nothing flagged at HTTP or file level, every file one length.
    audit = study_blinding_audit(study=demo_study)
    for key in ("http", "file"):
        channel = audit.channel(key)
        assert channel.audit is not None and not channel.flagged
        assert all(0.35 <= row.auc <= 0.65 for row in channel.audit.features), channel.audit.features
    assert audit.served_lengths == tuple(lengths)
    client.force_login(demo_study.created_by)
    page = client.get(f"/studies/{demo_study.pk}/").content.decode()
    assert re.search(r'id="channel-http" class="">\s*<td>HTTP</td>\s*<td>clean</td>', page)
    assert re.search(r'id="channel-file" class="">\s*<td>File</td>\s*<td>clean</td>', page)
    assert f"exactly {lengths.pop():,} bytes" in page
