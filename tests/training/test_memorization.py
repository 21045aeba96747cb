"""Tests for training.memorization: training images planted among synthetic ones are found and named, and
unrelated images are flagged at about the calibrated false-positive rate.

The cohort is simulated. Each patient is a smooth "X-ray-like" image: a fixed chest template (body, two darker
lungs, black air outside) with patient-specific position and size, plus a patient-specific low-frequency random
field. Images are 256 x 224 (not square, so the signature's padding is exercised); at this size a 2-4 px shift
is about 1-2 % of the field of view, as a few pixels are on a real radiograph downsampled for training.

The "features" are a fixed random projection of the pixel signature (a deterministic stand-in for an image
embedding such as a self-supervised network's), so the feature-space tests need no network.
"""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, dataclass

import numpy as np
import pytest
from scipy import ndimage, stats

from training.memorization import (
    HELD_OUT_NEAREST_NEIGHBOUR,
    PATIENT_PAIRS,
    MemorizationAudit,
    Threshold,
    calibrate_threshold,
    memorization_audit,
    nearest_neighbours,
    pixel_signature,
)

HEIGHT, WIDTH = 256, 224
FALSE_POSITIVE_RATE = 0.01
N_TRAINING, N_HELD_OUT, N_FRESH = 80, 300, 200
PLANTED_PER_KIND = 10
PLANTED_KINDS = ("exact", "shift", "noise", "brightness_contrast")
FEATURE_DIMENSION = 256


def patient_image(patient: int) -> np.ndarray:
    """One patient's radiograph-like image in [0, 1]; equal patient numbers give equal images."""
    rng = np.random.default_rng([patient, 7])
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    centre_y = HEIGHT / 2 + rng.uniform(-6, 6)
    centre_x = WIDTH / 2 + rng.uniform(-6, 6)
    scale_y, scale_x = rng.uniform(0.9, 1.05, size=2)
    y = (yy - centre_y) / (HEIGHT / 2) / scale_y
    x = (xx - centre_x) / (WIDTH / 2) / scale_x
    lungs = np.exp(-((((np.abs(x) - 0.42) / 0.26) ** 2 + ((y + 0.05) / 0.6) ** 2) ** 2))
    body = 1 / (1 + np.exp((np.abs(x) - 0.85) / 0.05)) / (1 + np.exp((np.abs(y) - 0.9) / 0.05))
    # Low-frequency anatomy: white noise smoothed on a coarse grid (cheap), then upsampled.
    coarse = ndimage.gaussian_filter(rng.normal(size=(HEIGHT // 8, WIDTH // 8)), 2.0, mode="reflect")
    field = ndimage.zoom(coarse, 8, order=3)[:HEIGHT, :WIDTH]
    field /= field.std()
    return np.clip(0.03 + body * (0.6 - 0.3 * lungs + 0.3 * field), 0.0, 1.0)


def translated(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The image moved by (dy, dx) pixels, the uncovered edge filled with black."""
    out = np.zeros_like(image)
    height, width = image.shape
    source = image[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
    out[max(0, dy) : max(0, dy) + source.shape[0], max(0, dx) : max(0, dx) + source.shape[1]] = source
    return out


def random_shift(rng: np.random.Generator) -> tuple[int, int]:
    """A translation of 2-4 px along one or both axes, in a random direction."""
    magnitudes = rng.integers(2, 5, size=2) * rng.choice([-1, 1], size=2)
    which = rng.integers(3)  # 0: vertical only, 1: horizontal only, 2: both
    return (int(magnitudes[0]) if which != 1 else 0, int(magnitudes[1]) if which != 0 else 0)


def with_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.02) -> np.ndarray:
    return np.clip(image + rng.normal(0.0, sigma, size=image.shape), 0.0, 1.0)


def planted_copy(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "exact":
        return image.copy()
    if kind == "shift":
        return translated(image, *random_shift(rng))
    if kind == "noise":
        return with_noise(image, rng)
    if kind == "brightness_contrast":
        return np.clip(rng.uniform(1.05, 1.12) * image + rng.uniform(-0.04, 0.03), 0.0, 1.0)
    raise AssertionError(kind)


def projection_features(signatures: np.ndarray) -> np.ndarray:
    """The stand-in embedding: a fixed Gaussian random projection of the flattened pixel signature."""
    flat = signatures.reshape(len(signatures), -1)
    projection = np.random.default_rng(12345).normal(size=(flat.shape[1], FEATURE_DIMENSION))
    return flat @ projection / math.sqrt(FEATURE_DIMENSION)


@dataclass(frozen=True)
class Cohort:
    training_ids: tuple[str, ...]
    training_signatures: np.ndarray
    training_features: np.ndarray
    synthetic_signatures: np.ndarray
    synthetic_features: np.ndarray
    planted: dict[int, tuple[str, str]]  # synthetic index -> (training id copied, kind of copy)
    fresh: tuple[int, ...]  # synthetic indices of images of new patients
    pixel_same: np.ndarray  # two views of one held-out patient
    pixel_different: np.ndarray  # each held-out image vs its nearest training image (all other patients)
    feature_same: np.ndarray
    feature_different: np.ndarray
    held_out_signatures: np.ndarray


def signatures_of(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([pixel_signature(image) for image in images])


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    rng = np.random.default_rng(2026)
    training_images = [patient_image(p) for p in range(N_TRAINING)]
    training_ids = tuple(f"train-{p:04d}" for p in range(N_TRAINING))
    training_signatures = signatures_of(training_images)

    # Held-out real patients (never in training). The null (different patients) compares each held-out image,
    # rendered as training and synthetic images are, with its nearest training image: calibrating on images
    # processed differently from the synthetic ones (here, shifted and noisy) would set the threshold too low.
    # Same patient: two acquisitions of one held-out patient, each shifted 2-4 px and noisy.
    held_out_images, first_views, second_views = [], [], []
    for p in range(N_HELD_OUT):
        base = patient_image(10_000 + p)
        held_out_images.append(base)
        first_views.append(with_noise(translated(base, *random_shift(rng)), rng))
        second_views.append(with_noise(translated(base, *random_shift(rng)), rng))
    held_out = signatures_of(held_out_images)
    first, second = signatures_of(first_views), signatures_of(second_views)

    # Synthetic set: planted copies of training images among images of new patients, in shuffled order.
    entries: list[tuple[np.ndarray, tuple[str, str] | None]] = []
    for kind_number, kind in enumerate(PLANTED_KINDS):
        for j in range(PLANTED_PER_KIND):
            patient = kind_number * PLANTED_PER_KIND + j
            entries.append((planted_copy(training_images[patient], kind, rng), (training_ids[patient], kind)))
    entries += [(patient_image(20_000 + p), None) for p in range(N_FRESH)]
    order = rng.permutation(len(entries))
    synthetic_images = [entries[i][0] for i in order]
    planted = {position: entries[i][1] for position, i in enumerate(order) if entries[i][1] is not None}
    fresh = tuple(position for position, i in enumerate(order) if entries[i][1] is None)
    synthetic_signatures = signatures_of(synthetic_images)

    training_features = projection_features(training_signatures)
    first_features, second_features = projection_features(first), projection_features(second)
    held_out_features = projection_features(held_out)
    return Cohort(
        training_ids=training_ids,
        training_signatures=training_signatures,
        training_features=training_features,
        synthetic_signatures=synthetic_signatures,
        synthetic_features=projection_features(synthetic_signatures),
        planted=planted,
        fresh=fresh,
        pixel_same=np.einsum("nij,nij->n", first, second),
        pixel_different=nearest_neighbours(held_out, training_signatures, k=1, metric="correlation").similarities[:, 0],
        feature_same=np.sum(unit(first_features) * unit(second_features), axis=1),
        feature_different=nearest_neighbours(held_out_features, training_features, k=1).similarities[:, 0],
        held_out_signatures=held_out,
    )


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def audit_of(cohort: Cohort, feature_threshold: Threshold | float, pixel_threshold: Threshold | float):
    return memorization_audit(
        synthetic_features=cohort.synthetic_features,
        training_features=cohort.training_features,
        synthetic_signatures=cohort.synthetic_signatures,
        training_signatures=cohort.training_signatures,
        feature_threshold=feature_threshold,
        pixel_threshold=pixel_threshold,
        training_ids=cohort.training_ids,
    )


def patient_thresholds(cohort: Cohort) -> tuple[Threshold, Threshold]:
    feature = calibrate_threshold(
        same_patient=cohort.feature_same,
        different_patient=cohort.feature_different,
        real_to_train_nn=None,
        false_positive_rate=FALSE_POSITIVE_RATE,
    )
    pixel = calibrate_threshold(
        same_patient=cohort.pixel_same,
        different_patient=cohort.pixel_different,
        real_to_train_nn=None,
        false_positive_rate=FALSE_POSITIVE_RATE,
    )
    return feature, pixel


def fresh_flag_limit(n_fresh: int, threshold: Threshold, null: np.ndarray, tail: float = 0.001) -> int:
    """The most flags among ``n_fresh`` unrelated images that the calibration makes plausible.

    If the fresh similarities and the ``threshold.n`` calibration similarities are exchangeable (drawn alike), and
    ``j`` calibration values lie above the threshold, the number of fresh values above it is beta-binomial with
    parameters (n_fresh, j + 1, n - j) (the rank argument of conformal prediction; Vovk et al., "Algorithmic
    Learning in a Random World", 2005). This is the binomial bound at the calibrated rate widened for the
    threshold being estimated from ``n`` values; its (1 - ``tail``) quantile fails an honest threshold once in
    a thousand cohorts.
    """
    above = int(np.sum(null > threshold.value))
    return int(stats.betabinom.ppf(1 - tail, n_fresh, above + 1, threshold.n - above))


# --- The audit on planted copies --------------------------------------------------------------------------------


def test_patient_calibrated_audit_flags_every_planted_copy_and_names_its_source(cohort):
    feature, pixel = patient_thresholds(cohort)
    audit = audit_of(cohort, feature, pixel)
    flags = {flag.synthetic_index: flag for flag in audit.flags}

    missed = sorted(set(cohort.planted) - set(flags))
    assert missed == [], f"planted copies not flagged: {[cohort.planted[i] for i in missed]}"
    for index, (training_id, kind) in cohort.planted.items():
        flag = flags[index]
        # Both measures catch every kind of copy here, each on its own.
        assert flag.flagged_by == ("feature", "pixel"), (kind, flag)
        assert flag.pixel_matches[0] == training_id, kind
        assert flag.feature_matches[0] == training_id, kind
        assert len(flag.pixel_matches) == len(flag.feature_matches) == 3
        assert flag.pixel_similarities == tuple(sorted(flag.pixel_similarities, reverse=True))
        assert flag.pixel_similarities[0] > pixel.value and flag.feature_similarities[0] > feature.value
        if kind == "exact":
            assert flag.pixel_similarities[0] == pytest.approx(1.0, abs=1e-9)
            assert flag.feature_similarities[0] == pytest.approx(1.0, abs=1e-9)


def test_patient_calibrated_audit_flags_fresh_images_at_about_the_false_positive_rate(cohort):
    feature, pixel = patient_thresholds(cohort)
    audit = audit_of(cohort, feature, pixel)
    fresh = set(cohort.fresh)
    fresh_flags = [flag for flag in audit.flags if flag.synthetic_index in fresh]
    by_pixel = sum("pixel" in flag.flagged_by for flag in fresh_flags)
    by_feature = sum("feature" in flag.flagged_by for flag in fresh_flags)
    # Each measure at 1 % per image (about 2 of 200 expected); flagged by either is at most their sum.
    pixel_limit = fresh_flag_limit(N_FRESH, pixel, cohort.pixel_different)
    feature_limit = fresh_flag_limit(N_FRESH, feature, cohort.feature_different)
    assert pixel_limit <= 12 and feature_limit <= 12  # about 5 %: the bound is not vacuous
    assert by_pixel <= pixel_limit
    assert by_feature <= feature_limit
    assert len(fresh_flags) <= pixel_limit + feature_limit
    # Every flag is a planted copy or a fresh image: nothing else is in the set.
    assert audit.n_flagged == len(cohort.planted) + len(fresh_flags)
    assert audit.n_synthetic == len(cohort.planted) + N_FRESH
    assert audit.n_training == N_TRAINING


def test_patient_calibration_reports_threshold_fpr_and_detection_rate(cohort):
    feature, pixel = patient_thresholds(cohort)
    for threshold, different, same in (
        (pixel, cohort.pixel_different, cohort.pixel_same),
        (feature, cohort.feature_different, cohort.feature_same),
    ):
        assert threshold.method == PATIENT_PAIRS
        assert threshold.false_positive_rate == FALSE_POSITIVE_RATE
        assert threshold.n == N_HELD_OUT and threshold.n_same_patient == N_HELD_OUT
        # Conservative: at most 1 % of unrelated calibration images are above it, and it is an observed value.
        assert np.mean(different > threshold.value) <= FALSE_POSITIVE_RATE
        assert threshold.value in different
        assert threshold.detection_rate == pytest.approx(np.mean(same > threshold.value))
        # Two acquisitions of one patient (2-4 px apart, noisy) are told apart from other patients.
        assert threshold.detection_rate >= 0.95
    with pytest.raises(FrozenInstanceError):
        pixel.value = 0.0  # type: ignore[misc]


def test_random_pair_calibration_flags_far_more_than_its_rate(cohort):
    """Why the null is each image's NEAREST other-patient similarity: a threshold from random single pairs is
    beaten by the maximum over 80 training images far more often than 1 % of the time (here 30 %)."""
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, N_HELD_OUT, size=(2, 2000))
    a, b = a[a != b], b[a != b]
    signatures = cohort.held_out_signatures.reshape(N_HELD_OUT, -1)
    random_pairs = np.sum(signatures[a] * signatures[b], axis=1)
    pair_level = calibrate_threshold(same_patient=None, different_patient=random_pairs, real_to_train_nn=None)
    audit = audit_of(cohort, feature_threshold=1.0, pixel_threshold=pair_level)  # no cosine is above 1
    fresh = set(cohort.fresh)
    fresh_flagged = sum(flag.synthetic_index in fresh for flag in audit.flags)
    assert fresh_flagged > 10 * FALSE_POSITIVE_RATE * N_FRESH  # 60 of 200 in this cohort


# --- Calibration without patient ids ----------------------------------------------------------------------------


def test_percentile_threshold_without_patient_ids(cohort):
    nn = cohort.pixel_different  # held-out real images' nearest-training-neighbour similarity
    threshold = calibrate_threshold(same_patient=None, different_patient=None, real_to_train_nn=nn)
    assert threshold.method == HELD_OUT_NEAREST_NEIGHBOUR
    assert threshold.detection_rate is None and threshold.n_same_patient is None
    assert threshold.n == N_HELD_OUT
    # numpy's "higher" 99th percentile of 300 values is the order statistic at index ceil(0.99 * 299) = 297.
    assert threshold.value == np.sort(nn)[297]
    assert np.mean(nn > threshold.value) <= FALSE_POSITIVE_RATE

    feature_threshold = calibrate_threshold(
        same_patient=None, different_patient=None, real_to_train_nn=cohort.feature_different
    )
    audit = audit_of(cohort, feature_threshold, threshold)
    flagged = {flag.synthetic_index for flag in audit.flags}
    assert set(cohort.planted) <= flagged
    limit = fresh_flag_limit(N_FRESH, threshold, nn) + fresh_flag_limit(
        N_FRESH, feature_threshold, cohort.feature_different
    )
    assert len(flagged - set(cohort.planted)) <= limit
    assert audit.pixel_threshold == threshold.value and audit.feature_threshold == feature_threshold.value


def test_stricter_rate_gives_a_higher_threshold(cohort):
    loose = calibrate_threshold(
        same_patient=None, different_patient=cohort.pixel_different, real_to_train_nn=None, false_positive_rate=0.1
    )
    strict = calibrate_threshold(
        same_patient=None, different_patient=cohort.pixel_different, real_to_train_nn=None, false_positive_rate=0.01
    )
    assert strict.value >= loose.value
    assert np.mean(cohort.pixel_different > loose.value) <= 0.1


# --- Pixel signature --------------------------------------------------------------------------------------------


def test_signature_dot_product_is_pearson_correlation_of_box_downsampled_images():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=(2, 128, 128))
    sa, sb = pixel_signature(a), pixel_signature(b)
    assert sa.shape == (64, 64)
    assert sa.mean() == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.norm(sa) == pytest.approx(1.0)
    # A 2 x 2 box filter is the mean of each 2 x 2 block (float32 inside Pillow, hence the tolerance).
    box_a, box_b = (x.reshape(64, 2, 64, 2).mean(axis=(1, 3)) for x in (a, b))
    assert float(np.sum(sa * sb)) == pytest.approx(np.corrcoef(box_a.ravel(), box_b.ravel())[0, 1], abs=1e-6)


def test_signature_pads_to_a_centred_square_and_ignores_linear_intensity_changes():
    image = patient_image(3)  # 256 x 224
    square = np.zeros((256, 256))
    square[:, 16:240] = image
    np.testing.assert_allclose(pixel_signature(image), pixel_signature(square), atol=1e-6)
    # Exact for a square image; on a padded one an offset also changes the step to the black padding.
    np.testing.assert_allclose(pixel_signature(square), pixel_signature(0.5 * square + 0.2), atol=1e-5)
    assert pixel_signature(image, size=32).shape == (32, 32)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((4, 4, 3)), "2-D"),
        (np.zeros((0, 4)), "2-D"),
        (np.full((8, 8), 1.5), r"\[0, 1\]"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.full((8, 8), 0.5), "constant"),
    ],
)
def test_signature_refuses_bad_images(pixels, message):
    with pytest.raises(ValueError, match=message):
        pixel_signature(pixels, size=4)


def test_signature_refuses_bad_size():
    with pytest.raises(ValueError, match="size"):
        pixel_signature(np.eye(8), size=1)


# --- Nearest neighbours -----------------------------------------------------------------------------------------


def test_nearest_neighbours_match_brute_force_in_any_chunking():
    rng = np.random.default_rng(2)
    queries, references = rng.normal(size=(23, 6)), rng.normal(size=(17, 6))
    cosine = unit(queries) @ unit(references).T
    expected = np.argsort(-cosine, axis=1, kind="stable")[:, :4]
    for chunk_rows in (1, 5, 23, 1000):
        found = nearest_neighbours(queries, references, k=4, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(found.indices, expected)
        np.testing.assert_allclose(found.similarities, np.take_along_axis(cosine, expected, axis=1))
    everything = nearest_neighbours(queries, references, k=17)
    np.testing.assert_array_equal(everything.indices, np.argsort(-cosine, axis=1, kind="stable"))


def test_correlation_metric_is_pearson_and_equals_dot_product_of_signatures():
    rng = np.random.default_rng(3)
    queries, references = rng.normal(size=(5, 30)) + 3.0, rng.normal(size=(9, 30)) * 2.0
    found = nearest_neighbours(queries, references, k=1, metric="correlation")
    pearson = np.corrcoef(queries, references)[:5, 5:]
    np.testing.assert_array_equal(found.indices[:, 0], pearson.argmax(axis=1))
    np.testing.assert_allclose(found.similarities[:, 0], pearson.max(axis=1))
    images = rng.uniform(size=(4, 32, 32))
    signatures = np.stack([pixel_signature(image, size=16) for image in images])
    by_signature = nearest_neighbours(signatures, signatures, k=4, metric="correlation")
    np.testing.assert_allclose(by_signature.similarities[:, 0], 1.0)
    np.testing.assert_array_equal(by_signature.indices[:, 0], np.arange(4))
    dots = signatures.reshape(4, -1) @ signatures.reshape(4, -1).T
    np.testing.assert_allclose(np.sort(by_signature.similarities, axis=1), np.sort(dots, axis=1), atol=1e-12)


def test_equal_similarities_come_in_reference_order():
    references = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    found = nearest_neighbours(np.array([[1.0, 0.0]]), references, k=3, chunk_rows=1)
    np.testing.assert_array_equal(found.indices, [[0, 1, 3]])


@pytest.mark.parametrize(
    ("queries", "references", "kwargs", "message"),
    [
        (np.ones((2, 3)), np.ones((4, 5)), {}, "dimension"),
        (np.ones((0, 3)), np.ones((4, 3)), {}, "empty"),
        (np.ones((2, 3)), np.ones((0, 3)), {}, "empty"),
        (np.ones(3), np.ones((4, 3)), {}, "one row per image"),
        (np.ones((2, 3)), np.ones((4, 3)), {"k": 5}, "k must be"),
        (np.ones((2, 3)), np.ones((4, 3)), {"k": 0}, "k must be"),
        (np.ones((2, 3)), np.ones((4, 3)), {"metric": "euclidean"}, "Unknown metric"),
        (np.zeros((2, 3)), np.ones((4, 3)), {}, "all-zero"),
        (np.ones((2, 3)), np.ones((4, 3)), {"metric": "correlation"}, "constant"),
        (np.ones((2, 3)), np.ones((4, 3)), {"chunk_rows": 0}, "chunk_rows"),
    ],
)
def test_nearest_neighbours_refuse_bad_inputs(queries, references, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(queries, references, **({"k": 3} | kwargs))


# --- Refused calibrations and audits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"same_patient": None, "different_patient": None, "real_to_train_nn": None}, "No calibration"),
        ({"same_patient": np.ones(200), "different_patient": None, "real_to_train_nn": None}, "need different"),
        ({"same_patient": None, "different_patient": np.ones(200), "real_to_train_nn": np.ones(200)}, "not both"),
        ({"same_patient": None, "different_patient": np.ones(99), "real_to_train_nn": None}, "at least 100"),
        ({"same_patient": None, "different_patient": None, "real_to_train_nn": np.ones((10, 20))}, "1-D"),
        ({"same_patient": None, "different_patient": np.array([]), "real_to_train_nn": None}, "non-empty"),
        ({"same_patient": np.array([]), "different_patient": np.ones(200), "real_to_train_nn": None}, "non-empty"),
        (
            {
                "same_patient": None,
                "different_patient": np.ones(200),
                "real_to_train_nn": None,
                "false_positive_rate": 0,
            },
            r"\(0, 1\)",
        ),
        (
            {
                "same_patient": None,
                "different_patient": None,
                "real_to_train_nn": np.ones(200),
                "false_positive_rate": 1,
            },
            r"\(0, 1\)",
        ),
    ],
)
def test_calibration_refuses_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        calibrate_threshold(**kwargs)


def small_audit_inputs() -> dict:
    rng = np.random.default_rng(4)
    return {
        "synthetic_features": rng.normal(size=(3, 8)),
        "training_features": rng.normal(size=(5, 8)),
        "synthetic_signatures": rng.normal(size=(3, 4, 4)),
        "training_signatures": rng.normal(size=(5, 4, 4)),
        "feature_threshold": 0.99,
        "pixel_threshold": 0.99,
        "training_ids": [f"t{i}" for i in range(5)],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"synthetic_signatures": np.ones((2, 4, 4))}, "synthetic_signatures has 2 rows"),
        ({"training_signatures": np.ones((4, 4, 4))}, "training_signatures has 4 rows"),
        ({"training_ids": ["t0", "t1"]}, "training_ids has 2"),
        ({"synthetic_features": np.ones((0, 8))}, "empty"),
        ({"training_features": np.ones((0, 8)), "training_signatures": np.ones((0, 4, 4))}, "empty"),
        ({"synthetic_features": np.ones((3, 7))}, "features differ in dimension"),
        ({"synthetic_signatures": np.ones((3, 5, 5))}, "signatures differ in shape"),
        ({"feature_threshold": np.nan}, "finite"),
        ({"k": 0}, "k must be"),
    ],
)
def test_audit_refuses_bad_inputs(change, message):
    with pytest.raises(ValueError, match=message):
        memorization_audit(**(small_audit_inputs() | change))


def test_audit_caps_k_at_the_training_set_and_flags_nothing_above_one():
    audit = memorization_audit(**(small_audit_inputs() | {"k": 10, "feature_threshold": 1.0, "pixel_threshold": 1.0}))
    assert isinstance(audit, MemorizationAudit)
    assert audit.k == 5 and audit.flags == () and audit.flag_rate == 0.0
