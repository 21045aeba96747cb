"""The audit can fail: each channel is flagged when a giveaway is planted in it (file size, positions, repeats,
black level), and says so on the study page. Planted with code that shares nothing with what it checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db.models import F
from PIL import Image

from readerstudy.blinding import study_blinding_audit
from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import SessionItem
from readerstudy.services import reader_assign
from readerstudy.stats.blinding import blinding_audit, feature_separation, is_flagged


def compressed_png(served: bytes) -> bytes:
    """The same pixels as a zlib-compressed PNG written by Pillow: what served files were before."""
    with Image.open(io.BytesIO(served)) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def texture_png(seed: int, low: float, high: float, size=(96, 96)) -> bytes:
    rng = np.random.default_rng(seed)
    values = rng.uniform(low, high, (size[1], size[0]))
    buffer = io.BytesIO()
    Image.fromarray(np.rint(values * 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_flag_rule_is_an_interval_and_a_band():
    assert not is_flagged(0.5, 0.5, 0.5)  # a constant feature: AUC 0.5, a zero-width CI at 0.5
    assert is_flagged(0.6, 0.51, 0.69)  # CI excludes 0.5
    assert is_flagged(0.67, 0.3, 1.0)  # point beyond 0.65, even with a wide CI
    assert is_flagged(0.33, 0.0, 0.7)
    assert not is_flagged(0.62, 0.4, 0.84)


def test_a_difference_nobody_can_measure_is_reported_not_flagged():
    truth = [0] * 20 + [1] * 20
    times = [1.0] * 20 + [1.2] * 20  # synthetic 0.2 ms slower, perfectly separated
    assert feature_separation("serve_ms", times, truth).separates
    quiet = feature_separation("serve_ms", times, truth, negligible=1.0)
    assert quiet.auc == 1.0 and not quiet.separates


@pytest.mark.django_db
def test_files_of_different_length_are_flagged_at_file_and_http_level(make_study, client, coordinator):
    study = make_study(real=6, synthetic=6, status="draft")
    clean = study_blinding_audit(study=study)
    assert not clean.channel("file").flagged and not clean.channel("http").flagged
    assert len(clean.served_lengths) == 1
    for case in study.cases.filter(truth="synthetic"):  # synthetic served files compressed, real ones not
        with case.image.open("rb") as handle:
            data = compressed_png(handle.read())
        case.image.save("image.png", ContentFile(data), save=True)
    audit = study_blinding_audit(study=study)
    assert audit.channel("http").flagged
    flagged_http = {row.feature for row in audit.channel("http").audit.separating}
    assert {"content_length", "bytes_sent"} <= flagged_http
    assert len(audit.served_lengths) > 1
    client.force_login(coordinator)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "different byte lengths" in page and "HTTP: " in page


@pytest.mark.django_db
def test_orders_that_put_synthetic_cases_first_are_flagged(make_study, make_user):
    study = make_study(real=10, synthetic=10, status="draft")
    readers = [make_user(f"r{i}", "reader") for i in range(3)]
    for reader in readers:
        session = reader_assign(study=study, reader=reader)
        items = list(session.items.select_related("case"))
        # Planted bias: synthetic first. Positions are moved out of the way, then written in the biased order.
        SessionItem.objects.filter(session=session).update(position=F("position") + 10_000)
        for index, item in enumerate(sorted(items, key=lambda item: (item.case.truth != "synthetic", item.pk))):
            SessionItem.objects.filter(pk=item.pk).update(position=index)
    audit = study_blinding_audit(study=study)
    order = audit.channel("order")
    assert order.flagged
    position = next(row for row in order.audit.features if row.feature == "position")
    assert position.auc == 0.0 and position.separates
    assert [row.reader for row in audit.reader_positions] == ["r0", "r1", "r2"]
    assert all(row.separation.auc == 0.0 for row in audit.reader_positions)


@pytest.mark.django_db
def test_fair_orders_are_not_flagged(make_study, make_user):
    study = make_study(real=12, synthetic=12, status="draft")
    for i in range(4):
        reader_assign(study=study, reader=make_user(f"fair{i}", "reader"))
    position = next(row for row in study_blinding_audit(study=study).channel("order").audit.features)
    assert position.ci_lower <= 0.5 <= position.ci_upper


@pytest.mark.django_db
def test_repeats_that_are_all_synthetic_are_flagged(make_study, make_user):
    study = make_study(real=10, synthetic=10, status="draft")
    readers = [make_user(f"q{i}", "reader") for i in range(3)]
    for reader in readers:
        session = reader_assign(study=study, reader=reader)
        end = session.items.count()
        for offset, case in enumerate(study.cases.filter(truth="synthetic")[:5]):
            SessionItem.objects.create(session=session, case=case, position=end + offset, replicate=1)
    audit = study_blinding_audit(study=study)
    assert audit.repeat_mix.synthetic == audit.repeat_mix.repeats == 15
    shown_twice = next(row for row in audit.channel("order").audit.features if row.feature == "shown_twice")
    assert shown_twice.separates and shown_twice.auc == pytest.approx(0.75)
    assert "15 of 15 hidden repeats are synthetic" in " ".join(audit.channel("order").facts)


@pytest.mark.django_db
def test_harmonisation_removes_a_black_level_giveaway_and_the_audit_shows_before_and_after(make_study):
    study = make_study(real=0, synthetic=0, status="draft", harmonise_intensity=True)
    # Real detector: a raised black level (0.3-0.9); generator: down to pure black (0.0-0.6). Same texture.
    cases_import(
        study=study, files=[IncomingFile(f"r{i}.png", texture_png(i, 0.3, 0.9)) for i in range(8)], truth="real"
    )
    cases_import(
        study=study,
        files=[IncomingFile(f"s{i}.png", texture_png(50 + i, 0.0, 0.6)) for i in range(8)],
        truth="synthetic",
    )
    audit = study_blinding_audit(study=study)
    before = {row.feature: row for row in audit.unharmonised.features}
    after = {row.feature: row for row in audit.channel("content").audit.features}
    assert before["p1"].auc == 0.0 and before["p1"].separates and before["mean"].separates
    assert not after["p1"].separates and not after["mean"].separates


def test_a_study_audit_with_no_giveaway_flags_nothing():
    rng = np.random.default_rng(5)
    truth = [0] * 40 + [1] * 40
    audit = blinding_audit({"a": rng.normal(size=80), "b": rng.normal(size=80)}, truth)
    assert all(row.ci_lower <= 0.5 <= row.ci_upper for row in audit.features)
