"""Small PNGs of served images, for the self-contained HTML report and the PDF."""

from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import Image

from readerstudy.models import Study


def case_thumbnails(study: Study, case_ids: Iterable[int], *, size: int = 160) -> dict[int, bytes]:
    """Small PNGs of the served images of some cases. A case whose file cannot be read is left out: a thumbnail is
    an illustration, never a reason to fail the report."""
    thumbnails = {}
    for case in study.cases.filter(pk__in=list(case_ids)).only("pk", "image"):
        try:
            with case.image.open("rb") as handle, Image.open(handle) as image:
                image.thumbnail((size, size))
                buffer = io.BytesIO()
                image.save(buffer, format="PNG", optimize=True)
        except OSError:
            continue
        thumbnails[case.pk] = buffer.getvalue()
    return thumbnails
