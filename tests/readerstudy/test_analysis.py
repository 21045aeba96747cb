"""The study's reading table and cached report, straight from the database (readerstudy.analysis)."""

from __future__ import annotations

import numpy as np
import pytest

from readerstudy.analysis import readings_version, study_analysis, study_table
from readerstudy.report_rows import headline
from readerstudy.stats import ReadingTable, build_report
from tests.factories import ReadingFactory, read_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_readers(make_user):
    return [make_user(f"reader-{name}", "reader") for name in ("ann", "bob", "cyd")]


def test_table_holds_main_readings_only_in_reader_then_position_order(make_study, three_readers):
    study = make_study(real=4, synthetic=4, practice=2)
    sessions = read_study(study, three_readers)
    table = study_table(study=study)
    assert len(table) == 3 * 8  # 2 practice readings per reader are never analysed
    assert table.readers == ("reader-ann", "reader-bob", "reader-cyd")
    assert table.modalities == ("study",)
    first = sessions[0].items.filter(is_practice=False).order_by("position").values_list("case_id", flat=True)
    assert table.cases == tuple(str(pk) for pk in first)


def test_table_matches_a_table_built_record_by_record_from_model_objects(make_study, three_readers):
    study = make_study(real=3, synthetic=5)
    read_study(study, three_readers)
    levels = study.confidence_levels
    records = []
    for session in study.sessions.order_by("reader__username"):
        for item in session.items.filter(is_practice=False).order_by("position").select_related("case", "reading"):
            reading = item.reading
            records.append(
                {
                    "reader": session.reader.username,
                    "modality": "study",
                    "case": item.case_id,
                    "truth": int(item.case.truth == "synthetic"),
                    "label": int(reading.call == "synthetic"),
                    "confidence": reading.confidence,
                    "anatomy": reading.anatomy,
                    "style": reading.style,
                    "artifacts": reading.artifacts,
                    "active_seconds": reading.active_ms / 1000,
                    "generator": item.case.generator,
                }
            )
    expected = ReadingTable.from_records(records, confidence_levels=levels)
    assert study_table(study=study).to_records() == expected.to_records()


def test_table_is_one_query(make_study, three_readers, django_assert_num_queries):
    study = make_study(real=3, synthetic=3)
    read_study(study, three_readers)
    with django_assert_num_queries(1):
        study_table(study=study)


def test_empty_study_has_no_table_and_says_why(make_study, three_readers):
    study = make_study(real=2, synthetic=2, practice=1)
    read_study(study, three_readers, limit=1)  # only the practice case is answered
    assert study_table(study=study) is None
    analysis = study_analysis(study=study)
    assert analysis.report is None and "No readings yet" in analysis.problem
    assert not headline(analysis.report).available


def test_report_is_cached_until_a_reading_changes(make_study, three_readers, django_assert_max_num_queries):
    study = make_study(real=3, synthetic=3)
    sessions = read_study(study, three_readers, limit=4)
    first = study_analysis(study=study)
    # A cache hit costs the version query only: no table is built and no report computed.
    with django_assert_max_num_queries(1):
        again = study_analysis(study=study)
    assert again.computed_at == first.computed_at
    ReadingFactory(session=sessions[0], reader_index=0)
    updated = study_analysis(study=study)
    assert updated.version.count == first.version.count + 1
    assert updated.computed_at > first.computed_at
    assert readings_version(study=study) == updated.version


def test_report_equals_build_report_of_the_table(make_study, three_readers):
    study = make_study(real=4, synthetic=4)
    read_study(study, three_readers)
    expected = build_report(study_table(study=study)).to_dict()
    assert study_analysis(study=study).report.to_dict() == expected


def test_headline_with_one_reader_falls_back_to_fixed_readers(make_study, reader):
    study = make_study(real=4, synthetic=4)
    read_study(study, [reader])
    summary = headline(study_analysis(study=study).report)
    assert summary.available
    assert summary.readers == 1
    assert "fixed readers" in summary.generalisation
    assert np.isfinite(summary.ci.lower) and np.isfinite(summary.ci.upper)


def test_changing_the_confidence_scale_recomputes_report_and_figures(make_study, three_readers):
    from django.core.cache import cache

    from readerstudy.plots import dashboard_figures
    from readerstudy.services import study_update

    study = make_study(real=3, synthetic=3, confidence_levels=3)
    read_study(study, three_readers)
    before = study_analysis(study=study)
    dashboard_figures(before)
    study_update(study=study, confidence_levels=5)  # no reading changes, every rating does (1..6 -> 1..10)
    after = study_analysis(study=study)
    assert after.version == before.version
    assert after.cache_key != before.cache_key  # the figures are cached under this key too
    assert cache.get(f"{after.cache_key}:figures") is None
    assert max(after.report.roc.per_reader[0].curve.thresholds[1:]) > 6  # ratings now on 1..10


def test_editing_a_read_case_invalidates_the_cached_report(make_study, three_readers):
    study = make_study(real=3, synthetic=3)
    read_study(study, three_readers, limit=4)
    first = study_analysis(study=study)
    case = study.cases.filter(items__reading__isnull=False).first()
    case.generator = "relabelled"
    case.save()
    assert study_analysis(study=study).computed_at > first.computed_at
