"""What every export format shares: the file it makes, the format's description, and the refusal of an empty study."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from readerstudy.analysis import study_table
from readerstudy.models import Study
from readerstudy.stats import ReadingTable

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ExportUnavailable(Exception):
    """The study has nothing to export in this format yet; the message says why."""


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content_type: str
    content: bytes | Iterator[bytes]


@dataclass(frozen=True)
class ExportFormat:
    slug: str
    label: str
    description: str
    suffix: str
    content_type: str
    build: Callable[[Study], bytes | Iterator[bytes]]

    def filename(self, study: Study) -> str:
        return f"study-{study.pk}-{self.suffix}"


def table_or_refuse(study: Study) -> ReadingTable:
    """The study's reading table, or ExportUnavailable when it has no analysed readings."""
    table = study_table(study=study)
    if table is None:
        raise ExportUnavailable("This study has no analysed readings yet, so there is nothing to export.")
    return table
