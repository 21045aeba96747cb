"""build_report on simulated studies: layout, internal consistency and the documented omissions."""

import json

import numpy as np
import pytest

from readerstudy.stats import ReadingTable, build_report, format_text
from readerstudy.stats.mrmc import mrmc_analysis
from readerstudy.stats.simulate import simulate_study


@pytest.fixture(scope="module")
def study():
    return simulate_study(readers=4, modalities=2, cases=60, repeat_share=0.1, seed=21)


@pytest.fixture(scope="module")
def report(study):
    return build_report(study)


def test_to_dict_is_strict_json_with_null_for_nan(report):
    payload = report.to_dict()
    text = json.dumps(payload, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text) == payload
    assert payload["schema"] == "readerstudy.stats.report/1"


def test_same_numbers_as_the_building_blocks(study, report):
    first = study.first_readings()
    assert report.mrmc.auc[0].random_readers_random_cases == mrmc_analysis(first).random_readers_random_cases
    pooled = report.binary.pooled.metrics.confusion
    assert pooled.total == len(first)
    assert sum(e.metrics.confusion.true_positive for e in report.binary.per_reader) == pooled.true_positive
    assert len(report.roc.per_reader) == 8 and len(report.roc.paired) == 4
    for entry in report.roc.per_reader:
        mask = (first.reader == entry.reader) & (first.modality == entry.modality)
        ranks_auc = entry.estimate.auc
        truth, rating = first.truth[mask].astype(bool), first.rating[mask]
        pairwise = np.mean(
            (rating[truth][:, None] > rating[~truth][None, :])
            + 0.5 * (rating[truth][:, None] == rating[~truth][None, :])
        )
        assert ranks_auc == pytest.approx(pairwise)


def test_every_section_is_filled_for_a_complete_study(study, report):
    assert report.design.generators == ("gen-a", "gen-b")
    assert report.design.n_repeat_readings == int(study.replicate.sum())
    assert all(len(getattr(report.mrmc, f)) == 1 for f in ("auc", "accuracy", "sensitivity", "specificity"))
    assert {g.generator for g in report.generators} == {"gen-a", "gen-b"}
    assert len(report.agreement.pairwise_kappa) == 2 * 6
    assert len(report.agreement.fleiss_kappa) == 2
    assert {a.variable for a in report.agreement.krippendorff_alpha} >= {"call", "rating", "anatomy:ordinal"}
    assert report.agreement.within_reader[0].reader is None and report.agreement.within_reader[0].pairs > 0
    assert {q.field for q in report.quality} == {"anatomy", "style", "artifacts"}
    assert {(t.reader, t.truth) for t in report.reading_time} >= {(None, "real"), (None, "synthetic")}
    synthetic_images = 2 * int(study.first_readings().case_truth.sum())
    assert len(report.realism.images) == synthetic_images
    assert [image.rank for image in report.realism.images] == list(range(1, synthetic_images + 1))
    assert report.notes == ()


def test_quality_scores_of_synthetic_images_are_lower_as_simulated(report):
    for entry in report.quality:
        assert entry.synthetic.mean < entry.real.mean
        assert entry.synthetic_vs_real.common_language < 0.5
        assert entry.synthetic_vs_real.rank_biserial == pytest.approx(2 * entry.synthetic_vs_real.common_language - 1)


def test_generator_detection_uses_that_generators_images_and_all_real_cases(study, report):
    first = study.first_readings()
    for entry in report.generators:
        in_group = (first.truth == 0) | (first.generator == entry.generator)
        mask = in_group & (first.modality == entry.modality)
        assert entry.detection.metrics.confusion.total == int(mask.sum())


def test_without_calls_binary_sections_are_omitted_with_a_note(reference):
    from readerstudy.stats.formats import read_table

    report = build_report(read_table(reference / "vandyke_long.csv"))
    assert report.binary is None and report.realism is None
    assert report.mrmc.accuracy == () and len(report.mrmc.auc) == 1
    assert any("no label" in note for note in report.notes)


def test_a_design_that_is_not_crossed_is_analysed_per_modality(reference):
    from readerstudy.stats.formats import read_table

    # Kundel: modality 1 was read on cases 1-95, modalities 2 and 3 on cases 96-190.
    report = build_report(read_table(reference / "kundel_long.csv"))
    assert [r.modalities for r in report.mrmc.auc] == [("1",), ("2",), ("3",)]
    assert any("each modality is analysed on its own cases" in note for note in report.notes)


def test_text_report_mentions_each_section(report):
    text = format_text(report)
    for heading in ("CALLS", "ROC", "MRMC AUC", "AGREEMENT", "QUALITY", "READING TIME", "MOST REALISTIC"):
        assert heading in text


def test_single_reader_single_modality_study_still_reports():
    rng = np.random.default_rng(0)
    records = [
        {
            "reader": "only",
            "case": f"c{k}",
            "truth": int(k < 20),
            "rating": float(rng.integers(1, 6)),
            "label": int(rng.random() < 0.5),
        }
        for k in range(40)
    ]
    report = build_report(ReadingTable.from_records(records))
    json.dumps(report.to_dict(), allow_nan=False)
    assert report.roc.per_reader[0].estimate.n_positive == 20
    assert report.agreement.fleiss_kappa == ()


def test_alpha_changes_interval_width(study):
    narrow = build_report(study, alpha=0.2).roc.per_reader[0].estimate.ci
    wide = build_report(study, alpha=0.01).roc.per_reader[0].estimate.ci
    assert wide.upper - wide.lower > narrow.upper - narrow.lower
    with pytest.raises(ValueError, match="alpha"):
        build_report(study, alpha=1.5)
