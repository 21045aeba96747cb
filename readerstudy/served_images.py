"""A case's served image: rendered with its study's serving settings (and, with intensity harmonisation on, as it
would be without it, for the audit's "before"), and the file and content properties the blinding audit records.
"""

from __future__ import annotations

import numpy as np

from imaging.normalise import describe_served, normalise_for_serving
from readerstudy.blinding import FILE_FEATURES
from readerstudy.models import (
    Study,
)


def render_served(study: Study, pixels: np.ndarray) -> bytes:
    return normalise_for_serving(pixels, **study.serving_options())


def render_unharmonised(study: Study, pixels: np.ndarray) -> bytes | None:
    """The served image as it would be without intensity harmonisation (for the audit's "before"), or None."""
    if not study.harmonise_intensity:
        return None
    return normalise_for_serving(pixels, **{**study.serving_options(), "harmonise": False})


def stored_bytes(stored) -> bytes:
    with stored.open("rb") as handle:
        return handle.read()


def served_features(served: bytes, *, unharmonised: bytes | None = None) -> dict[str, float]:
    """The served image's properties, and with harmonisation on, its content properties before it."""
    features = describe_served(served).features()
    if unharmonised is not None:
        features.update(
            {
                f"unharmonised_{name}": value
                for name, value in describe_served(unharmonised).features().items()
                if name not in FILE_FEATURES  # file properties do not change with it
            }
        )
    return features


def case_features(decoded, served: bytes, *, unharmonised: bytes | None = None) -> dict[str, float]:
    """What a trivial classifier could use instead of anatomy: served-file and original-file properties, and with
    intensity harmonisation on, the served image's content properties before it (`unharmonised_*`)."""
    features = served_features(served, unharmonised=unharmonised)
    features.update(
        {
            "original_width": float(decoded.width),
            "original_height": float(decoded.height),
            "original_aspect_ratio": decoded.width / decoded.height,
            "original_bits": float(decoded.bits_stored),
            "original_is_dicom": float(decoded.source_format == "dicom"),
            "original_is_jpeg": float(decoded.source_format == "jpeg"),
            "original_was_colour": float(decoded.was_colour),
        }
    )
    return features
