"""The blinding audit flags file properties that separate the classes, and stays quiet when none does."""

import numpy as np
import pytest

from readerstudy.imports import IncomingFile, cases_import
from readerstudy.stats.blinding import blinding_audit
from tests.conftest import png_bytes


def test_a_feature_that_separates_the_classes_is_flagged():
    rng = np.random.default_rng(0)
    truth = [0] * 20 + [1] * 20
    audit = blinding_audit(
        {
            "size_bytes": list(rng.normal(100, 5, 20)) + list(rng.normal(60, 5, 20)),  # synthetic files are smaller
            "mean": list(rng.normal(0.5, 0.05, 40)),
        },
        truth,
    )
    assert audit.confounded
    assert [f.feature for f in audit.separating] == ["size_bytes"]
    assert audit.separating[0].auc < 0.1
    assert audit.combined_auc > 0.9


def test_uninformative_features_are_not_flagged():
    rng = np.random.default_rng(1)
    truth = [0] * 30 + [1] * 30
    audit = blinding_audit({name: list(rng.normal(0, 1, 60)) for name in ("a", "b", "c")}, truth)
    assert not audit.confounded
    assert all(0.25 < f.auc < 0.75 for f in audit.features)
    assert 0.2 < audit.combined_auc < 0.8


def test_features_that_separate_only_together_are_caught_by_the_combined_classifier():
    rng = np.random.default_rng(2)
    n = 60
    truth = np.array([0] * n + [1] * n)
    shared = rng.normal(0, 1, 2 * n)
    # Each feature alone is weak, their difference is decisive.
    a = shared + 0.1 * truth + rng.normal(0, 0.02, 2 * n)
    b = shared - 0.1 * truth + rng.normal(0, 0.02, 2 * n)
    audit = blinding_audit({"a": a, "b": b}, truth)
    assert not audit.separating
    assert audit.combined_auc > 0.9 and audit.combined.separates and audit.confounded


def test_too_few_cases_is_said_not_judged():
    audit = blinding_audit({"size_bytes": [1, 2, 3, 10, 11, 12]}, [0, 0, 0, 1, 1, 1])
    assert not audit.enough_cases and not audit.confounded


@pytest.mark.django_db
def test_study_page_warns_when_synthetic_images_are_smaller(client, make_study, coordinator):
    study = make_study(real=0, synthetic=0)
    # Real: large, detailed images. Synthetic: small, flat ones, upscaled when served. A trivial tell.
    cases_import(
        study=study, files=[IncomingFile(f"r{i}.png", png_bytes(i, size=(400, 300))) for i in range(6)], truth="real"
    )
    flat = [IncomingFile(f"s{i}.png", png_bytes(100 + i, size=(32, 32))) for i in range(6)]
    cases_import(study=study, files=flat, truth="synthetic")
    client.force_login(coordinator)
    body = client.get(f"/studies/{study.pk}/").content.decode()
    assert "could tell the classes apart without looking at the anatomy" in body
    assert "Content: " in body  # the flagged channel, named
    assert "original width" in body.lower()
