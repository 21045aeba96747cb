"""Observer-study statistics in pure numpy/scipy (no Django): proportions, ROC/AUC, MRMC, agreement, power.

The entry point is :func:`build_report`: ``build_report(ReadingTable.from_records(rows)).to_dict()`` gives
the JSON the dashboard shows and ``python -m readerstudy.stats FILE`` prints.
"""

from readerstudy.stats.formats import read_table, write_table
from readerstudy.stats.report import StudyReport, build_report
from readerstudy.stats.table import ReadingTable, ReadingTableError, ordinal_score
from readerstudy.stats.text import format_text

__all__ = [
    "ReadingTable",
    "ReadingTableError",
    "StudyReport",
    "build_report",
    "format_text",
    "ordinal_score",
    "read_table",
    "write_table",
]
