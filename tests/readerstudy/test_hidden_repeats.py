"""Hidden repeat cases: placed late and out of sight, recorded as replicate 1, and used only for within-reader
agreement (dashboard, workbook, long CSV and the command line agree; iMRMC and every other statistic ignore them)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.urls import reverse

from readerstudy.analysis import study_analysis, study_table
from readerstudy.forms import StudyForm
from readerstudy.imports import IncomingFile, cases_import
from readerstudy.ordering import balanced_order, run_limits, with_hidden_repeats
from readerstudy.readings import Answer, reading_submit
from readerstudy.selectors import session_current_item
from readerstudy.services import reader_assign
from readerstudy.stats import build_report
from readerstudy.stats.formats import parse_imrmc
from tests.conftest import png_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- placement (pure) ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_run", [2, 3])
@pytest.mark.parametrize("n", [8, 21, 60])
def test_repeats_come_late_from_the_first_half_and_lengthen_runs_by_at_most_one_each(n, max_run):
    classes = ["real", "synthetic"] * (n // 2) + ["real"] * (n % 2)
    limits = run_limits(Counter(classes), max_run)
    for seed in range(25):
        labels = [classes[i] for i in balanced_order(classes, seed=seed, max_run=max_run)]
        count = max(1, n // 5)
        block = with_hidden_repeats(labels, count=count, seed=seed, max_run=max_run)
        firsts = [index for index, replicate in block if replicate == 0]
        repeats = [index for index, replicate in block if replicate == 1]
        assert firsts == list(range(n))  # the shuffled block keeps its order
        assert len(repeats) == count == len(set(repeats))
        assert all(index < n // 2 for index in repeats)  # drawn from the first half
        for index in repeats:
            first_position = block.index((index, 0))
            assert block.index((index, 1)) - first_position >= (n + 1) // 2  # half the block in between
        # Repeats are chosen and placed without looking at the class (so they are as often synthetic as the block
        # is) and do not re-check the run rule: each can lengthen one run by one.
        extra = Counter(labels[i] for i in repeats)
        for label, run in itertools.groupby(labels[index] for index, _ in block):
            assert len(list(run)) <= limits[label] + extra[label]


def test_repeats_are_reproducible_from_the_seed_and_capped_at_half_the_block():
    labels = ["real", "synthetic"] * 10
    assert with_hidden_repeats(labels, count=4, seed="s", max_run=3) == with_hidden_repeats(
        labels, count=4, seed="s", max_run=3
    )
    assert len({tuple(with_hidden_repeats(labels, count=4, seed=seed, max_run=3)) for seed in range(10)}) > 1
    capped = with_hidden_repeats(labels, count=500, seed=1, max_run=3)
    assert sum(replicate for _, replicate in capped) == 10
    assert with_hidden_repeats(labels, count=0, seed=1, max_run=3) == [(i, 0) for i in range(20)]
    assert with_hidden_repeats(["real"], count=3, seed=1, max_run=3) == [(0, 0)]


# -- sessions -------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reader_gets_the_stored_order_with_hidden_repeats_of_main_cases(make_study, reader):
    study = make_study(real=10, synthetic=10, practice=2, repeat_cases=4)
    session = reader_assign(study=study, reader=reader)
    items = list(session.items.select_related("case").order_by("position"))
    assert len(items) == 2 + 20 + 4
    assert [item.position for item in items] == list(range(26))
    assert all(item.is_practice and item.replicate == 0 for item in items[:2])
    main = items[2:]
    # Reproducible from the stored seed: the balanced main order, then the repeats placed in it.
    cases = [case for case in study.cases.order_by("id") if not case.is_practice]
    ordered = [cases[i] for i in balanced_order([c.truth for c in cases], seed=f"{session.seed}:main:0", max_run=3)]
    block = with_hidden_repeats([c.truth for c in ordered], count=4, seed=f"{session.seed}:repeats:0", max_run=3)
    assert [(item.case_id, item.replicate) for item in main] == [(ordered[i].pk, r) for i, r in block]
    repeats = [item for item in main if item.replicate == 1]
    assert len(repeats) == 4
    assert len({item.token for item in items}) == 26  # a repeat has its own token and image address


@pytest.mark.django_db
def test_cases_added_later_are_shown_once_after_the_stored_order(make_study, reader):
    study = make_study(real=4, synthetic=4, repeat_cases=2)
    session = reader_assign(study=study, reader=reader)
    before = list(session.items.order_by("position").values_list("position", "case_id", "replicate"))
    cases_import(study=study, files=[IncomingFile("late.png", png_bytes(4242))], truth="synthetic")
    after = list(session.items.order_by("position").values_list("position", "case_id", "replicate"))
    assert after[: len(before)] == before
    assert len(after) == len(before) + 1 and after[-1][2] == 0


@pytest.mark.django_db
def test_a_repeat_looks_like_any_other_case_to_the_reader(client, make_study, reader):
    study = make_study(real=3, synthetic=3, repeat_cases=1)
    session = reader_assign(study=study, reader=reader)
    repeat = session.items.get(replicate=1)
    first = session.items.get(case=repeat.case, replicate=0)
    client.force_login(reader)
    while (item := session_current_item(session=session)).position < repeat.position:
        reading_submit(session=session, item_token=item.token, answer=_answer(session, item, "real"))
    page = client.get(reverse("reading_page", args=[session.pk])).content.decode()
    assert f"{repeat.position + 1} of 7" in page
    assert reverse("reading_image", args=[repeat.token]) in page
    assert first.token not in page
    assert "repeat" not in page.lower() and "replicate" not in page.lower()
    same_image = [client.get(reverse("reading_image", args=[i.token])) for i in (first, repeat)]
    assert b"".join(same_image[0].streaming_content) == b"".join(same_image[1].streaming_content)
    api = client.get(f"/api/sessions/{session.pk}/next/")
    assert api.status_code == 200 and "replicate" not in api.content.decode()


# -- analysis and exports -------------------------------------------------------------------------------------------


def _answer(session, item, call: str) -> Answer:
    values = {"call": call, "confidence": 1 + item.case.pk % 5, "submission_id": uuid.uuid4(), "active_ms": 2000}
    if session.study.asks_quality_for(item.case):
        values.update(anatomy=3, style=4, artifacts=4)
    return Answer(**values)


@pytest.fixture
def repeated(make_study, make_user):
    """Two readers, 8 + 8 cases, 4 hidden repeats each; every reader changes their call on two of the repeats."""
    study = make_study(real=8, synthetic=8, repeat_cases=4)
    for reader_index, name in enumerate(("ann", "bob")):
        session = reader_assign(study=study, reader=make_user(f"reader-{name}", "reader"))
        flipped = 0
        while (item := session_current_item(session=session)) is not None:
            call = item.case.truth if (item.case.pk + reader_index) % 3 else "real"
            if item.replicate == 1 and flipped < 2:
                call = "real" if call == "synthetic" else "synthetic"
                flipped += 1
            reading_submit(session=session, item_token=item.token, answer=_answer(session, item, call))
    return study


@pytest.mark.django_db
def test_repeats_feed_only_within_reader_agreement(repeated):
    table = study_table(study=repeated)
    assert Counter(table.replicate.tolist()) == {0: 32, 1: 8}
    report = study_analysis(study=repeated).report
    pooled, *per_reader = report.agreement.within_reader
    assert pooled.reader is None and pooled.pairs == 8
    assert pooled.call_agreement.successes == 4  # two changed calls per reader
    assert [(e.reader, e.pairs, e.call_agreement.successes) for e in per_reader] == [
        ("reader-ann", 4, 2),
        ("reader-bob", 4, 2),
    ]
    # Everything else is the analysis of the first readings alone.
    alone = build_report(table.first_readings()).to_dict()
    full = report.to_dict()
    for section in ("binary", "roc", "mrmc", "quality", "reading_time"):
        assert json.dumps(full[section], sort_keys=True) == json.dumps(alone[section], sort_keys=True), section
    assert full["design"]["n_repeat_readings"] == 8


@pytest.mark.django_db
def test_dashboard_workbook_csv_and_command_line_agree_on_repeats(client, repeated, coordinator, tmp_path):
    client.force_login(coordinator)
    page = client.get(reverse("study_dashboard", args=[repeated.pk])).content.decode()
    assert "Consistency within readers (hidden repeats)" in page
    assert "0.50 (" in page  # 4 of 8 pairs with the same call, pooled and per reader

    body = b"".join(client.get(reverse("study_export", args=[repeated.pk, "readings.csv"])).streaming_content)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert Counter(row["replicate"] for row in rows) == {"0": 32, "1": 8}
    path = tmp_path / "study.csv"
    path.write_bytes(body)
    result = subprocess.run(
        [sys.executable, "-m", "readerstudy.stats", str(path)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    dashboard = json.loads(json.dumps(study_analysis(study=repeated).report.to_dict(), allow_nan=False))
    assert json.loads(result.stdout) == dashboard

    imrmc = client.get(reverse("study_export", args=[repeated.pk, "imrmc"])).content.decode()
    assert len(parse_imrmc(imrmc)) == 32  # iMRMC has no notion of repeats: first readings only

    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(client.get(reverse("study_export", args=[repeated.pk, "report.xlsx"])).content))
    sheet = list(workbook["Within reader"].iter_rows(values_only=True))
    assert sheet[1][:2] == ("all readers", 8) and sheet[1][2] == pytest.approx(0.5)


@pytest.mark.django_db
def test_study_form_takes_the_number_of_repeats():
    form = StudyForm(data={**_form_defaults(), "repeat_cases": "600"})
    assert not form.is_valid() and "repeat_cases" in form.errors
    form = StudyForm(data={**_form_defaults(), "repeat_cases": "5"})
    assert form.is_valid(), form.errors


def _form_defaults() -> dict:
    return {
        "name": "Repeats",
        "instructions": "",
        "status": "draft",
        "confidence_levels": "5",
        "quality_scoring": "all",
        "quality_sample_fraction": "0.5",
        "blank_screen_ms": "0",
        "max_run_length": "3",
        "display_size": "1024",
        "practice_feedback": "on",
    }
