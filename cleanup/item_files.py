"""The files of a cleanup item: reading the original it cleans, storing its mask, cleaned image and previews
under fixed names (a retry overwrites), deleting what a failed image wrote, and rebuilding its cleaned pixels.
"""

from __future__ import annotations

import logging

import numpy as np

from cleanup.models import CleanupItem, CleanupJob, item_file_name
from cleanup.services import CleanupRefused
from imaging.read import read_image
from readerstudy.files import store_replacing

logger = logging.getLogger(__name__)


def read_stored(stored) -> bytes:
    with stored.open("rb") as handle:
        return handle.read()


def original_bytes(item: CleanupItem) -> bytes:
    """The file an item cleans: the case's stored original, or the generated image's PNG."""
    return read_stored(item.case.original if item.case_id is not None else item.batch_image.png)


def store_item_file(job: CleanupJob, item: CleanupItem, kind: str, data: bytes, written: list[str]) -> str:
    """Store one output of an item under its fixed name (`readerstudy.files.store_replacing`) and note it in
    `written`, so that a failed image can take its files back with it."""
    saved = store_replacing(item_file_name(job.pk, item.pk, kind), data)
    written.append(saved)
    return saved


def item_cleaned_pixels(item: CleanupItem) -> np.ndarray:
    """The cleaned image of an item at native resolution, as float32 in [0, 1].

    Outside the mask these are the original's decoded pixels exactly (the pipeline guarantees it, and rebuilding
    them from the original keeps it so through the 16-bit file); inside it, the stored 16-bit cleaned pixels.
    """
    if not item.changed:
        raise CleanupRefused("Cleanup changed nothing in this image: there are no cleaned pixels.")
    original = read_image(original_bytes(item)).pixels
    cleaned = read_image(read_stored(item.cleaned)).pixels
    mask = read_image(read_stored(item.mask)).pixels > 0
    if not original.shape == cleaned.shape == mask.shape:
        raise CleanupRefused(
            f"The stored cleaned image ({cleaned.shape[1]}x{cleaned.shape[0]}) does not match the original "
            f"({original.shape[1]}x{original.shape[0]})."
        )
    return np.where(mask, cleaned, original).astype(np.float32)
