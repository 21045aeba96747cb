"""End-to-end cost of the coordinator dashboard on PostgreSQL: table from the database, report, figures, the page
itself (cold and cached) and the exports, for a study of 20 readers x 2,000 cases (40,000 readings).

It creates a throwaway test database next to the one in DATABASE_URL (``test_<name>``), fills it with bulk inserts
(readings simulated by ``readerstudy.stats.simulate``), measures, and drops it. Run from the repository root:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/readerstudy .venv/bin/python benchmarks/dashboard.py \
        [--readers 20 --cases 2000 --repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from PIL import Image  # noqa: E402

from readerstudy.analysis import READING_FIELDS, analysed_readings, study_analysis, study_table  # noqa: E402
from readerstudy.models import Case, ReaderSession, Reading, SessionItem, Study  # noqa: E402
from readerstudy.plots import render_figures  # noqa: E402
from readerstudy.roles import COORDINATOR, READER, ensure_role_groups  # noqa: E402
from readerstudy.stats import ReadingTable, build_report  # noqa: E402
from readerstudy.stats.simulate import simulate_study  # noqa: E402


def timed(function, repeats: int) -> tuple[float, float, object]:
    """Best and median seconds over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def fill(readers: int, cases: int, media: Path) -> Study:
    """A study with ``readers`` readers who each read every one of ``cases`` cases, written with bulk inserts."""
    groups = ensure_role_groups()
    users = get_user_model()
    coordinator = users.objects.create_user("bench-coordinator", password="x")
    coordinator.groups.add(groups[COORDINATOR])
    reader_users = users.objects.bulk_create([users(username=f"bench-reader-{j + 1:02d}") for j in range(readers)])
    groups[READER].user_set.add(*reader_users)
    study = Study.objects.create(name="Benchmark study", status=Study.Status.OPEN, created_by=coordinator)

    # Every case shares one small served image: the PDF's thumbnails read real files.
    (media / "served").mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)).save(buffer, "PNG")
    (media / "served" / "bench.png").write_bytes(buffer.getvalue())
    simulated = simulate_study(readers=readers, modalities=1, cases=cases, seed=1)
    truth = simulated.case_truth
    generator = simulated.case_generator
    case_rows = Case.objects.bulk_create(
        [
            Case(
                study=study,
                truth="synthetic" if truth[k] else "real",
                label=f"case-{k + 1:05d}.png",
                generator=str(generator[k]),
                original="served/bench.png",
                original_sha256=f"{k:064x}",
                original_format="png",
                image="served/bench.png",
                image_sha256="0" * 64,
                width=256,
                height=256,
            )
            for k in range(cases)
        ],
        batch_size=1000,
    )
    sessions = ReaderSession.objects.bulk_create([ReaderSession(study=study, reader=user) for user in reader_users])
    rng = np.random.default_rng(2)
    items = []
    for session in sessions:
        for position, k in enumerate(rng.permutation(cases)):
            items.append(SessionItem(session=session, case=case_rows[k], position=position))
    items = SessionItem.objects.bulk_create(items, batch_size=5000)
    # simulate_study's rows run reader by reader, case by case.
    case_index = {case.pk: k for k, case in enumerate(case_rows)}
    readings = []
    for index, item in enumerate(items):
        row = (index // cases) * cases + case_index[item.case_id]  # items were created reader by reader
        readings.append(
            Reading(
                item=item,
                call="synthetic" if simulated.label[row] else "real",
                confidence=int(simulated.confidence[row]),
                anatomy=int(simulated.anatomy[row]),
                style=int(simulated.style[row]),
                artifacts=int(simulated.artifacts[row]),
                active_ms=int(simulated.active_seconds[row] * 1000),
                submission_id=uuid.uuid4(),
            )
        )
    Reading.objects.bulk_create(readings, batch_size=5000)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (best and median shown)")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database: this benchmark measures the production set-up.")

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    media = Path(tempfile.mkdtemp(prefix="bench-media-"))
    settings.MEDIA_ROOT = media
    try:
        start = time.perf_counter()
        study = fill(args.readers, args.cases, media)
        n = Reading.objects.count()
        filled = time.perf_counter() - start
        print(f"study: {args.readers} readers x {args.cases} cases = {n} readings, filled in {filled:.1f} s")
        report_steps(study, args.repeats)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(f"peak resident set size of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    versions = f"python {platform.python_version()}, numpy {np.__version__}, django {django.get_version()}"
    print(f"{versions}, PostgreSQL {connection.pg_version // 10000}, {platform.machine()}, {os.cpu_count()} CPUs")


def report_steps(study: Study, repeats: int) -> None:
    def line(name: str, best: float, median: float) -> None:
        print(f"{name:<58} best {best:6.3f} s   median {median:6.3f} s")

    best, median, _ = timed(lambda: list(analysed_readings(study=study).values_list(*READING_FIELDS)), repeats)
    line("query: values_list of every analysed reading", best, median)
    best, median, table = timed(lambda: study_table(study=study), repeats)
    line("study_table (query + ReadingTable.from_columns)", best, median)
    records = table.to_records()
    best, median, _ = timed(lambda: ReadingTable.from_records(records), repeats)
    line("for comparison: ReadingTable.from_records of the same rows", best, median)
    best, median, report = timed(lambda: build_report(table), repeats)
    line("build_report", best, median)
    best, median, _ = timed(lambda: render_figures(report), repeats)
    line("render_figures (6 SVG figures)", best, median)

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-coordinator"))
    url = reverse("study_dashboard", args=[study.pk])

    def cold_page():
        cache.clear()
        response = client.get(url)
        assert response.status_code == 200
        return response

    best, median, response = timed(cold_page, repeats)
    line("dashboard page, cold (table + report + figures + HTML)", best, median)
    print(f"{'':<58} page size {len(response.content) / 1e6:.2f} MB")
    best, median, _ = timed(lambda: client.get(url), repeats)
    line("dashboard page, cached (no reading changed)", best, median)
    best, median, _ = timed(lambda: study_analysis(study=study), repeats)
    line("study_analysis cache hit (version query + unpickle)", best, median)
    for slug in ("readings.csv", "report.xlsx", "imrmc", "rjafroc.xlsx", "report.pdf"):

        def download(slug=slug):
            response = client.get(reverse("study_export", args=[study.pk, slug]))
            body = b"".join(response.streaming_content) if response.streaming else response.content
            return body

        best, median, body = timed(download, max(1, repeats - 1))
        line(f"export {slug} ({len(body) / 1e6:.1f} MB)", best, median)


if __name__ == "__main__":
    main()
