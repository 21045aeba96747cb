"""The input files of RJafroc: the JAFROC workbook (TRUTH, FP, TP sheets) and the OR-DBM long CSV."""

from __future__ import annotations

from readerstudy.exports.common import table_or_refuse
from readerstudy.models import Study
from readerstudy.stats.formats import format_rjafroc_csv, rjafroc_xlsx_bytes


def rjafroc_xlsx(study: Study) -> bytes:
    return rjafroc_xlsx_bytes(table_or_refuse(study))


def rjafroc_csv(study: Study) -> bytes:
    return format_rjafroc_csv(table_or_refuse(study)).encode()
