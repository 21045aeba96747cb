"""Command line: ``python -m readerstudy.stats PATH`` prints the full study report of a long CSV, iMRMC
``.imrmc`` or JAFROC ``.xlsx`` file as JSON (``--format text`` for people). Needs no database or Django.
Malformed input exits with status 2 and a one-line message on stderr naming the line at fault."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from readerstudy.stats.formats import read_table
from readerstudy.stats.report import build_report
from readerstudy.stats.table import ReadingTableError
from readerstudy.stats.text import format_text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m readerstudy.stats",
        description="Reader-study statistics: accuracy, ROC/AUC, OR MRMC, agreement, image quality.",
    )
    parser.add_argument("path", help="long CSV (reader,modality,case,truth,rating,...), .imrmc or JAFROC .xlsx")
    parser.add_argument("--format", choices=("json", "text"), default="json", help="output format (default json)")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level (default 0.05)")
    parser.add_argument(
        "--modality-order",
        help="comma-separated modalities, listed first in this order (differences are a - b)",
    )
    parser.add_argument(
        "--confidence-levels",
        type=int,
        help="K of a 1..K confidence scale: rows without a rating get one from label and confidence",
    )
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error("--alpha must lie between 0 and 1")
    try:
        table = read_table(args.path, confidence_levels=args.confidence_levels)
        if args.modality_order:
            table = table.with_modality_order([m.strip() for m in args.modality_order.split(",") if m.strip()])
    except ReadingTableError as error:
        print(f"{args.path}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{args.path}: {error.strerror or error}", file=sys.stderr)
        return 2
    report = build_report(table, alpha=args.alpha)
    if args.format == "text":
        sys.stdout.write(format_text(report))
    else:
        json.dump(report.to_dict(), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
