"""Time and memory of ``build_report`` (MRMC included) on a simulated study.

Default: 20 readers x 2 modalities x 2,000 cases (80,000 readings, calls, confidence, three quality
scores, reading times, two generators). Run from the repository root:

    .venv/bin/python benchmarks/stats_report.py [--readers 20 --modalities 2 --cases 2000 --repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import scipy

from readerstudy.stats import ReadingTable, build_report
from readerstudy.stats.simulate import simulate_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--modalities", type=int, default=2)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (the best and median are reported)")
    args = parser.parse_args()

    table = simulate_study(readers=args.readers, modalities=args.modalities, cases=args.cases, seed=1)
    records = table.to_records()
    start = time.perf_counter()
    ReadingTable.from_records(records)  # what the Django side does with database rows
    from_records = time.perf_counter() - start
    build_report(table)  # warm-up: imports, caches
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        report = build_report(table)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    payload = json.dumps(report.to_dict(), allow_nan=False)
    serialise = time.perf_counter() - start

    tracemalloc.start()
    build_report(table)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    print(f"study: {args.readers} readers x {args.modalities} modalities x {args.cases} cases = {len(table)} readings")
    print(f"build_report: best {min(times):.3f} s, median {float(np.median(times)):.3f} s over {args.repeats} runs")
    print(f"ReadingTable.from_records({len(records)} dicts): {from_records:.3f} s")
    print(f"to_dict + json.dumps: {serialise:.3f} s, {len(payload) / 1e6:.1f} MB of JSON")
    print(f"peak traced Python allocation during build_report: {traced_peak / 2**20:.0f} MiB")
    print(f"peak resident set size of the process: {max_rss_kib / 1024:.0f} MiB")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, {platform.machine()}"
    )


if __name__ == "__main__":
    main()
