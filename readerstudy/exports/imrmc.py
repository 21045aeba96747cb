"""The input file of the FDA's iMRMC: truth rows, then one rating per reading (first readings only)."""

from __future__ import annotations

from readerstudy.exports.common import table_or_refuse
from readerstudy.models import Study
from readerstudy.stats.formats import format_imrmc


def imrmc(study: Study) -> bytes:
    description = f"Reader study {study.pk}: {study.name} (synthetic = 1, rating = call x confidence on 1..2K)"
    return format_imrmc(table_or_refuse(study), description=description).encode()
