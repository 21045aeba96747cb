"""Memorisation audit: does the generator copy training patients? Each synthetic image is compared with every
training image, in a feature space and in pixel space, and flagged when its nearest training image is more similar
than a threshold calibrated on real images of different patients at a stated false-positive rate.

Plain numpy/scipy (Pillow for the pixel downsampling), no Django, no torch. The two measures are those of
copy-detection audits of generative models: nearest-neighbour cosine similarity of image embeddings (Somepalli et
al., "Diffusion Art or Digital Forgery?", CVPR 2023) and a pixel-space nearest-neighbour comparison (Carlini et
al., "Extracting Training Data from Diffusion Models", USENIX Security 2023), here the Pearson correlation
(normalised cross-correlation at zero shift) of standardised downsampled images. Chest X-rays are biometric
(Packhäuser et al., "Deep learning-based patient re-identification is able to exploit the biometric nature of
medical chest X-ray data", Sci. Rep. 2022) and medical diffusion models do copy training images (Dar et al.,
"Investigating data memorization in 3D latent diffusion models for medical image synthesis", 2023), so the
question is whether a synthetic image is closer to a training patient than images of other patients are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from imaging.normalise import pad_to_square

# Query rows per block of the (queries x references) similarity matrix: 1,000 x 100,000 float64 is 800 MB, so
# blocks keep a whole-training-set audit within memory.
NEIGHBOUR_CHUNK_ROWS = 1000

Metric = Literal["cosine", "correlation"]
METRICS: tuple[str, ...] = ("cosine", "correlation")

PATIENT_PAIRS = "different_patient_quantile"
HELD_OUT_NEAREST_NEIGHBOUR = "held_out_nearest_neighbour_quantile"


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` most similar references of each query, most similar first (ties: lower reference index first)."""

    indices: np.ndarray  # (n_queries, k) int64 rows into the references
    similarities: np.ndarray  # (n_queries, k) float64
    metric: str


@dataclass(frozen=True)
class Threshold:
    """A similarity above ``value`` is flagged as a copy; at most ``false_positive_rate`` of the ``n`` calibration
    similarities between unrelated images are above it.

    ``method`` is ``PATIENT_PAIRS`` (calibrated on different-patient similarities, with the detection rate on
    same-patient similarities alongside) or ``HELD_OUT_NEAREST_NEIGHBOUR`` (the percentile of held-out real images'
    nearest-training-neighbour similarity, used when patient ids are unknown; no detection rate).
    """

    value: float
    method: str
    false_positive_rate: float
    n: int
    detection_rate: float | None = None
    n_same_patient: int | None = None


@dataclass(frozen=True)
class Flag:
    """One synthetic image whose nearest training image is over a threshold by at least one measure.

    The matches are training ids, most similar first, top-k by each measure; ``flagged_by`` names the measure(s)
    ("feature", "pixel") whose nearest-neighbour similarity is over its threshold.
    """

    synthetic_index: int
    feature_matches: tuple[str, ...]
    feature_similarities: tuple[float, ...]
    pixel_matches: tuple[str, ...]
    pixel_similarities: tuple[float, ...]
    flagged_by: tuple[str, ...]


@dataclass(frozen=True)
class MemorizationAudit:
    """The flagged synthetic images, how many were audited against how many training images, and the thresholds."""

    flags: tuple[Flag, ...]
    n_synthetic: int
    n_training: int
    n_flagged: int
    n_flagged_feature: int
    n_flagged_pixel: int
    feature_threshold: float
    pixel_threshold: float
    k: int

    @property
    def flag_rate(self) -> float:
        return self.n_flagged / self.n_synthetic


def pixel_signature(pixels: np.ndarray, *, size: int = 64) -> np.ndarray:
    """The pixel-space signature of an image: the image centred on a black square (``imaging.normalise.
    pad_to_square``), reduced to ``size`` x ``size`` with Pillow's box (area-average) filter on the float data,
    then standardised to zero mean and unit Euclidean norm.

    The dot product of two signatures is the Pearson correlation of the two downsampled images (the pixel
    correlation of the normalised downsampled image; a pixel-space copy measure as in Carlini et al. 2023, made
    invariant to intensity scaling). Downsampling first makes it tolerant of noise and of one-pixel resampling
    differences; the correlation makes it blind to a linear brightness/contrast change (exactly for a square image;
    on a padded one a brightness offset also changes the step to the black padding, slightly).
    Returns a (size, size) float64 array.
    """
    if not isinstance(size, int | np.integer) or size < 2:
        raise ValueError(f"The signature size must be an integer of at least 2, got {size!r}.")
    image = np.asarray(pixels, dtype=np.float64)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"Expected a non-empty 2-D grayscale image, got an array of shape {image.shape}.")
    if not np.all(np.isfinite(image)):
        raise ValueError("The image contains NaN or infinite values.")
    if image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(f"Expected intensities in [0, 1], got [{image.min():.4g}, {image.max():.4g}].")
    square = pad_to_square(image.astype(np.float32))
    reduced = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BOX), dtype=np.float64)
    centred = reduced - reduced.mean()
    norm = np.linalg.norm(centred)
    # A constant image has no correlation with anything; refusing it beats silently calling it "no match".
    if norm <= 1e-12:
        raise ValueError("The image is constant after downsampling, so its pixel correlation is undefined.")
    return centred / norm


def nearest_neighbours(
    queries: np.ndarray,
    references: np.ndarray,
    *,
    k: int = 3,
    metric: Metric = "cosine",
    chunk_rows: int = NEIGHBOUR_CHUNK_ROWS,
) -> Neighbours:
    """The ``k`` nearest references of every query by exact (brute-force) search, in blocks of ``chunk_rows``
    queries.

    ``metric="cosine"``: cosine similarity, the dot product after L2-normalising every row (for embeddings).
    ``metric="correlation"``: Pearson correlation, the dot product after centring and L2-normalising every row;
    for :func:`pixel_signature` outputs, already standardised, it is their plain dot product. Rows may be images
    (any trailing shape): each is flattened. Zero (cosine) or constant (correlation) rows are refused.
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}.")
    q = _unit_rows(queries, "queries", centre=metric == "correlation")
    r = _unit_rows(references, "references", centre=metric == "correlation")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"Queries and references differ in dimension: {q.shape[1]} and {r.shape[1]}.")
    if not isinstance(k, int | np.integer) or not 1 <= k <= r.shape[0]:
        raise ValueError(f"k must be an integer from 1 to the number of references ({r.shape[0]}), got {k!r}.")
    if not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    similarities = np.empty((q.shape[0], k), dtype=np.float64)
    for start in range(0, q.shape[0], chunk_rows):
        block = q[start : start + chunk_rows] @ r.T
        if k < r.shape[0]:
            candidates = np.argpartition(-block, k - 1, axis=1)[:, :k]
        else:
            candidates = np.broadcast_to(np.arange(r.shape[0]), block.shape)
        candidate_sims = np.take_along_axis(block, candidates, axis=1)
        # Most similar first; equal similarities in reference order, so results do not depend on chunking.
        order = np.lexsort((candidates, -candidate_sims), axis=1)
        indices[start : start + chunk_rows] = np.take_along_axis(candidates, order, axis=1)
        similarities[start : start + chunk_rows] = np.take_along_axis(candidate_sims, order, axis=1)
    return Neighbours(indices=indices, similarities=np.clip(similarities, -1.0, 1.0), metric=metric)


def calibrate_threshold(
    *,
    same_patient: np.ndarray | None,
    different_patient: np.ndarray | None,
    real_to_train_nn: np.ndarray | None,
    false_positive_rate: float = 0.01,
) -> Threshold:
    """The similarity above which a synthetic image is flagged, calibrated on real images at a stated
    false-positive rate: the empirical (1 - ``false_positive_rate``) quantile, taken conservatively (numpy's
    ``method="higher"``, an observed value at or above the quantile), so at most that fraction of the unrelated
    calibration similarities is strictly above it (a threshold on the empirical null distribution, with the
    same-versus-different-patient split of patient re-identification, Packhäuser et al. 2022).

    With patient ids (``different_patient`` given): the null is the similarity of images of DIFFERENT patients.
    Because the audit flags on a synthetic image's NEAREST training image, pass for each held-out real image its
    highest similarity to a training image of another patient; similarities of random single pairs give a
    pair-level rate, and the maximum over thousands of training images would then flag far more than the stated
    rate. ``same_patient`` (optional: similarities between two images of one patient) gives the detection rate,
    the fraction above the threshold, reported alongside.

    Without patient ids (``real_to_train_nn`` given, the other two None): the stated percentile of held-out real
    images' nearest-training-neighbour similarity. Those real images may share patients with the training set
    only by accident, so the threshold is the same null, less cleanly separated.

    At least ``ceil(1 / false_positive_rate)`` calibration similarities are required: fewer cannot resolve the rate.
    """
    if not 0.0 < false_positive_rate < 1.0:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate!r}.")
    if different_patient is not None:
        if real_to_train_nn is not None:
            raise ValueError("Give either patient-pair similarities or real_to_train_nn, not both.")
        null = _similarities(different_patient, "different_patient", false_positive_rate)
        method = PATIENT_PAIRS
    elif same_patient is not None:
        raise ValueError("same_patient similarities need different_patient similarities to set the threshold.")
    elif real_to_train_nn is not None:
        null = _similarities(real_to_train_nn, "real_to_train_nn", false_positive_rate)
        method = HELD_OUT_NEAREST_NEIGHBOUR
    else:
        raise ValueError("No calibration similarities: give different_patient (and same_patient) or real_to_train_nn.")
    value = float(np.quantile(null, 1.0 - false_positive_rate, method="higher"))
    detection_rate = n_same = None
    if same_patient is not None:
        same = _similarities(same_patient, "same_patient", None)
        detection_rate, n_same = float(np.mean(same > value)), int(same.size)
    return Threshold(
        value=value,
        method=method,
        false_positive_rate=float(false_positive_rate),
        n=int(null.size),
        detection_rate=detection_rate,
        n_same_patient=n_same,
    )


def memorization_audit(
    *,
    synthetic_features: np.ndarray,
    training_features: np.ndarray,
    synthetic_signatures: np.ndarray,
    training_signatures: np.ndarray,
    feature_threshold: Threshold | float,
    pixel_threshold: Threshold | float,
    training_ids: Sequence[str],
    k: int = 3,
) -> MemorizationAudit:
    """Flag every synthetic image whose nearest training image is over a threshold by either measure: cosine
    similarity of features (Somepalli et al. 2023), or pixel correlation of :func:`pixel_signature` outputs
    (Carlini et al. 2023). A flag is strictly above the threshold, matching :func:`calibrate_threshold`.

    Each flag names the top-``k`` training ids by each measure (``k`` is capped at the number of training
    images), so a reviewer can put the synthetic image beside the training images it may copy.
    """
    n_synthetic = _row_count(synthetic_features, "synthetic_features")
    n_training = _row_count(training_features, "training_features")
    if _row_count(synthetic_signatures, "synthetic_signatures") != n_synthetic:
        raise ValueError(
            f"synthetic_signatures has {len(synthetic_signatures)} rows but synthetic_features has {n_synthetic}."
        )
    if _row_count(training_signatures, "training_signatures") != n_training:
        raise ValueError(
            f"training_signatures has {len(training_signatures)} rows but training_features has {n_training}."
        )
    if np.shape(synthetic_features)[1:] != np.shape(training_features)[1:]:
        raise ValueError(
            f"Synthetic and training features differ in dimension: {np.shape(synthetic_features)[1:]} and "
            f"{np.shape(training_features)[1:]}."
        )
    if np.shape(synthetic_signatures)[1:] != np.shape(training_signatures)[1:]:
        raise ValueError(
            f"Synthetic and training signatures differ in shape: {np.shape(synthetic_signatures)[1:]} and "
            f"{np.shape(training_signatures)[1:]}."
        )
    ids = tuple(str(training_id) for training_id in training_ids)
    if len(ids) != n_training:
        raise ValueError(f"training_ids has {len(ids)} entries but there are {n_training} training images.")
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    k = min(int(k), n_training)
    feature_limit = _threshold_value(feature_threshold, "feature_threshold")
    pixel_limit = _threshold_value(pixel_threshold, "pixel_threshold")

    by_feature = nearest_neighbours(synthetic_features, training_features, k=k, metric="cosine")
    by_pixel = nearest_neighbours(synthetic_signatures, training_signatures, k=k, metric="correlation")
    over_feature = by_feature.similarities[:, 0] > feature_limit
    over_pixel = by_pixel.similarities[:, 0] > pixel_limit
    flags = tuple(
        Flag(
            synthetic_index=int(i),
            feature_matches=tuple(ids[j] for j in by_feature.indices[i]),
            feature_similarities=tuple(float(s) for s in by_feature.similarities[i]),
            pixel_matches=tuple(ids[j] for j in by_pixel.indices[i]),
            pixel_similarities=tuple(float(s) for s in by_pixel.similarities[i]),
            flagged_by=tuple(name for name, over in (("feature", over_feature[i]), ("pixel", over_pixel[i])) if over),
        )
        for i in np.flatnonzero(over_feature | over_pixel)
    )
    return MemorizationAudit(
        flags=flags,
        n_synthetic=n_synthetic,
        n_training=n_training,
        n_flagged=len(flags),
        n_flagged_feature=int(over_feature.sum()),
        n_flagged_pixel=int(over_pixel.sum()),
        feature_threshold=feature_limit,
        pixel_threshold=pixel_limit,
        k=k,
    )


def _unit_rows(x: np.ndarray, name: str, *, centre: bool) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(f"{name} must have one row per image, shape (n, ...), got shape {array.shape}.")
    if array.shape[0] == 0 or array[0].size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}).")
    rows = array.reshape(array.shape[0], -1)
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if centre:
        rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms <= 1e-12):
        kind = "constant" if centre else "all-zero"
        raise ValueError(f"{name} has {kind} rows, whose similarity is undefined.")
    return rows / norms


def _row_count(x: np.ndarray, name: str) -> int:
    shape = np.shape(x)
    if len(shape) < 2:
        raise ValueError(f"{name} must have one row per image, shape (n, ...), got shape {shape}.")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    return int(shape[0])


def _similarities(x: np.ndarray, name: str, false_positive_rate: float | None) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of similarities, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if false_positive_rate is not None:
        needed = int(np.ceil(1.0 / false_positive_rate - 1e-9))
        if array.size < needed:
            raise ValueError(
                f"{name} has {array.size} similarities; a false-positive rate of {false_positive_rate:g} "
                f"needs at least {needed}."
            )
    return array


def _threshold_value(threshold: Threshold | float, name: str) -> float:
    value = float(threshold.value if isinstance(threshold, Threshold) else threshold)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return value
