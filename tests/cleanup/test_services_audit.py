"""The study page's blinding audit warns, in plain words with the shares per class, when text cleanup did not treat
the classes alike or burned-in text is left in one class much more than in the other."""

from __future__ import annotations

import pytest

from cleanup.ocr import tesseract_available
from cleanup.review import cleanup_item_accept, cleanup_job_accept_unchanged
from readerstudy.blinding import FEATURE_LABELS, study_blinding_audit, treatment_audit
from tests.cleanup.helpers import run_job
from tests.factories import PhantomStudyFactory


def rows(real: list[tuple[dict, dict]], synthetic: list[tuple[dict, dict]]) -> list[tuple[str, dict, dict]]:
    """(truth, served_features, provenance) rows as the audit reads them from the cases."""
    return [("real", *row) for row in real] + [("synthetic", *row) for row in synthetic]


CLEANED = {"cleanup": {"changed": True, "inpainter": "classical"}}
UNCHANGED = {"cleanup": {"changed": False, "inpainter": ""}}


def test_synthetic_images_cleaned_and_real_ones_not_is_a_warning_with_the_shares():
    audit = treatment_audit(rows([({}, {})] * 4, [({}, CLEANED)] * 3 + [({}, UNCHANGED)]))
    assert audit.warnings == (
        "Text cleanup was applied to 4 of 4 (100%) synthetic cases but to 0 of 4 (0%) real cases. The classes were "
        "not treated alike: run the same cleanup on the real cases and accept it there too (images it leaves "
        "unchanged count as treated).",
    )
    assert (audit.synthetic.cleanup_recorded, audit.synthetic.cleaned, audit.real.cleanup_recorded) == (4, 3, 0)


def test_both_classes_through_the_same_cleanup_is_not_a_warning_whatever_it_changed():
    # Cleanup changed most synthetic images and few real ones: the same treatment, different findings.
    audit = treatment_audit(rows([({}, UNCHANGED)] * 9 + [({}, CLEANED)], [({}, CLEANED)] * 9 + [({}, UNCHANGED)]))
    assert audit.warnings == () and audit.notes == ()


def test_a_gap_below_a_tenth_of_the_cases_is_tolerated_and_one_at_a_tenth_is_not():
    # 19 of 20 vs 20 of 20: one image short (5 points). 18 of 20 vs 20 of 20: 10 points, TREATED_SHARE_GAP.
    assert treatment_audit(rows([({}, CLEANED)] * 19 + [({}, {})], [({}, CLEANED)] * 20)).warnings == ()
    assert len(treatment_audit(rows([({}, CLEANED)] * 18 + [({}, {})] * 2, [({}, CLEANED)] * 20)).warnings) == 1


def test_different_fills_per_class_are_a_warning():
    sd = {"cleanup": {"changed": True, "inpainter": "stable-diffusion-inpainting"}}
    audit = treatment_audit(rows([({}, CLEANED)] * 3, [({}, sd)] * 3))
    assert audit.warnings == (
        "Cleaned real cases were filled with classical, cleaned synthetic cases with stable-diffusion-inpainting: "
        "the filled areas may look different by class. Clean both classes with the same settings.",
    )


def test_text_left_on_one_class_much_more_than_the_other_is_a_warning_with_the_shares():
    with_text, without = ({"text_regions": 2.0}, {}), ({"text_regions": 0.0}, {})
    audit = treatment_audit(rows([with_text] * 6 + [without] * 4, [with_text] + [without] * 9))
    assert audit.warnings == (
        "Burned-in text is still found on 6 of 10 (60%) real cases but on 1 of 10 (10%) synthetic cases: readers "
        "can use it as a giveaway. Clean the text from the real cases (or from both).",
    )
    # 3 of 10 vs 2 of 10: under TEXT_SHARE_GAP (20 points), no warning.
    assert treatment_audit(rows([with_text] * 3 + [without] * 7, [with_text] * 2 + [without] * 8)).warnings == ()
    # Fewer than five checked cases in a class: too few to judge.
    assert treatment_audit(rows([with_text] * 4, [without] * 4)).warnings == ()


def test_text_counted_on_only_some_cases_is_said():
    audit = treatment_audit(rows([({"text_regions": 0.0}, {})] * 3 + [({}, {})], [({}, {})] * 4))
    assert audit.warnings == ()
    assert audit.notes == (
        "Text was counted on 3 of 4 real and 0 of 4 synthetic served images; check the rest so the classes can be "
        "compared.",
    )
    assert FEATURE_LABELS["text_regions"] == "burned-in text regions"


@pytest.mark.django_db
@pytest.mark.usefixtures("no_queue")
@pytest.mark.skipif(not tesseract_available(), reason="Debian's tesseract is not installed")
def test_the_study_page_warns_until_both_classes_are_cleaned_alike(client, coordinator):
    """Real images with labels, synthetic ones without: the check finds the text gap; cleaning only the synthetic
    images is a treatment gap; cleaning the real ones too and accepting them clears both warnings."""
    study = PhantomStudyFactory(created_by=coordinator, cases=[("synthetic", None)] * 5 + [("real", "PORTABLE")] * 5)
    client.force_login(coordinator)
    run_job(study, coordinator, mode="check")
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "Text cleanup did not treat the classes alike." in page
    assert "Burned-in text is still found on 5 of 5 (100%) real cases but on 0 of 5 (0%) synthetic cases" in page
    assert "burned-in text regions" in page  # the count is also one of the audited properties

    synthetic = run_job(study, coordinator, cases=study.cases.filter(truth="synthetic"))
    assert cleanup_job_accept_unchanged(job=synthetic, reviewer=coordinator).accepted == 5
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "Text cleanup was applied to 5 of 5 (100%) synthetic cases but to 0 of 5 (0%) real cases." in page

    real = run_job(study, coordinator, cases=study.cases.filter(truth="real"))
    for item in real.items.all():
        assert item.changed and item.served_text_regions == 0
        cleanup_item_accept(item=item, reviewer=coordinator)
    treatment = study_blinding_audit(study=study).treatment
    assert treatment.warnings == () and treatment.notes == ()
    assert (treatment.real.cleaned, treatment.real.with_text, treatment.synthetic.cleanup_recorded) == (5, 0, 5)
    assert "did not treat the classes alike" not in client.get(f"/studies/{study.pk}/").content.decode()
