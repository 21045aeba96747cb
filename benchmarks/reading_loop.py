"""Load test of the reading loop on PostgreSQL under gunicorn: many simulated readers submit readings and fetch the
next case and its image, as the browser does (htmx POST, then the next image).

    .venv/bin/python benchmarks/reading_loop.py --readers 50 --cases 60 --think 3.0

It creates a fresh database (`readerstudy_bench` on the local PostgreSQL unless --database-url is given), a study,
one session per reader, starts gunicorn, runs the readers concurrently (asyncio + httpx, spread over
--client-processes processes) and reports latency percentiles for submit-and-next (the POST that records the reading
and returns the next case) and for the image fetch, throughput, HTTP errors, and whether every accepted reading is in
the database (lost readings).

Latency is reported twice: as the simulated readers saw it, and as the server spent it (gunicorn's access log,
request start to response written). On one small machine the load generator competes with the server for the same
cores, so the client-side figures include waiting for the generator's own event loop; the server-side figures are
what a reader on another machine would add network time to.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_RE = re.compile(r'src="(/img/[A-Za-z0-9_-]+)"')
ITEM_RE = re.compile(r'name="item" value="([^"]+)"')
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def prepare(database_url: str, readers: int, cases: int, media_root: Path) -> list[tuple[int, str]]:
    """Fresh schema, a study with `cases` phantom cases, `readers` readers with sessions; returns (session, cookie)."""
    import django

    os.environ["DATABASE_URL"] = database_url
    os.environ["MEDIA_ROOT"] = str(media_root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from imaging.phantom import chest_phantom
    from imaging.png import encode_png_gray8, to_uint8
    from readerstudy.imports import IncomingFile, cases_import
    from readerstudy.roles import COORDINATOR, READER, ensure_role_groups
    from readerstudy.services import reader_assign, study_create, study_update

    if _has_tables():
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", interactive=False, verbosity=0)
    groups = ensure_role_groups()
    user_model = get_user_model()
    coordinator = user_model.objects.create_user("bench-coordinator", password="x")
    coordinator.groups.add(groups[COORDINATOR])
    study = study_create(created_by=coordinator, name="Load test", display_size=1024)
    half = cases // 2
    for truth, style, count in (("real", "a", half), ("synthetic", "b", cases - half)):
        files = [
            IncomingFile(
                f"{truth}-{i}.png",
                encode_png_gray8(
                    to_uint8(chest_phantom(i + (0 if truth == "real" else 10_000), size=1024, style=style))
                ),
            )
            for i in range(count)
        ]
        cases_import(study=study, files=files, truth=truth)
    study_update(
        study=study,
        changed_by=coordinator,
        status="open",
        blinding_acknowledged=True,
        blinding_reason="Load test on phantoms: blinding is not what is measured.",
    )
    result = []
    for index in range(readers):
        reader = user_model.objects.create_user(f"bench-reader-{index}", password="x")
        reader.groups.add(groups[READER])
        session = reader_assign(study=study, reader=reader)
        store = SessionStore()
        store[SESSION_KEY] = str(reader.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = reader.get_session_auth_hash()
        store.create()
        result.append((session.pk, store.session_key))
    return result


def _has_tables() -> bool:
    from django.db import connection

    return "readerstudy_study" in connection.introspection.table_names()


def ensure_database(database_url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


async def simulated_reader(client, base: str, session_pk: int, think: float, rounds: int, out: dict) -> None:
    import httpx

    page = await client.get(f"{base}/read/{session_pk}/")
    page.raise_for_status()
    html = page.text
    csrf = CSRF_RE.search(html).group(1)
    rng = random.Random(session_pk)
    for _ in range(rounds):
        item = ITEM_RE.search(html)
        if item is None:
            break
        if think:
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
        data = {
            "csrfmiddlewaretoken": csrf,
            "item": item.group(1),
            "submission_id": str(uuid.uuid4()),
            "call": rng.choice(["real", "synthetic"]),
            "confidence": str(rng.randint(1, 5)),
            "anatomy": "3",
            "style": "4",
            "artifacts": "4",
            "active_ms": "4000",
        }
        started = time.perf_counter()
        try:
            response = await client.post(
                f"{base}/read/{session_pk}/submit/",
                data=data,
                headers={"HX-Request": "true", "X-CSRFToken": csrf, "Referer": f"{base}/read/{session_pk}/"},
            )
        except httpx.HTTPError as exc:
            out["errors"].append(f"submit: {exc!r}")
            continue
        out["submit"].append(time.perf_counter() - started)
        if response.status_code != 200 or "Please complete" in response.text:
            out["errors"].append(f"submit: HTTP {response.status_code}")
            continue
        out["accepted"] += 1
        html = response.text
        image = IMAGE_RE.search(html)
        if image is None:
            break
        started = time.perf_counter()
        try:
            picture = await client.get(base + image.group(1))
        except httpx.HTTPError as exc:
            out["errors"].append(f"image: {exc!r}")
            continue
        out["image"].append(time.perf_counter() - started)
        out["loop"].append(out["submit"][-1] + out["image"][-1])
        if picture.status_code != 200:
            out["errors"].append(f"image: HTTP {picture.status_code}")


def run_client_process(args: tuple) -> dict:
    base, sessions, think, rounds = args
    return asyncio.run(run_load(base, sessions, think, rounds))


async def run_load(base: str, sessions: list[tuple[int, str]], think: float, rounds: int) -> dict:
    import httpx

    out = {"submit": [], "image": [], "loop": [], "errors": [], "accepted": 0}
    limits = httpx.Limits(max_connections=len(sessions) * 2, max_keepalive_connections=len(sessions) * 2)
    clients = [httpx.AsyncClient(cookies={"sessionid": key}, timeout=30, limits=limits) for _, key in sessions]
    started = time.perf_counter()
    await asyncio.gather(
        *(simulated_reader(c, base, pk, think, rounds, out) for c, (pk, _) in zip(clients, sessions, strict=True))
    )
    out["seconds"] = time.perf_counter() - started
    for c in clients:
        await c.aclose()
    return out


def load_in_processes(base: str, sessions: list, args) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    shares = [sessions[i :: args.client_processes] for i in range(args.client_processes)]
    with ProcessPoolExecutor(args.client_processes) as pool:
        parts = list(pool.map(run_client_process, [(base, share, args.think, args.cases) for share in shares if share]))
    merged = {key: [v for part in parts for v in part[key]] for key in ("submit", "image", "loop", "errors")}
    merged["accepted"] = sum(part["accepted"] for part in parts)
    merged["seconds"] = max(part["seconds"] for part in parts)
    return merged


def server_timings(access_log: Path) -> dict[str, list[float]]:
    """Seconds the server spent per request, from gunicorn's access log (%(D)s is in microseconds)."""
    timings: dict[str, list[float]] = {"submit": [], "image": []}
    for line in access_log.read_text().splitlines():
        method, path, _status, micros = line.split()
        if method == "POST" and path.endswith("/submit/"):
            timings["submit"].append(int(micros) / 1e6)
        elif method == "GET" and path.startswith("/img/"):
            timings["image"].append(int(micros) / 1e6)
    return timings


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--cases", type=int, default=60, help="cases per reader (each is read once)")
    parser.add_argument("--think", type=float, default=3.0, help="mean seconds a reader looks at a case (0 = none)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (1: no GIL contention)")
    parser.add_argument("--keep-alive", type=int, default=75, help="seconds gunicorn keeps an idle connection")
    parser.add_argument("--client-processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/readerstudy_bench"),
    )
    args = parser.parse_args()

    media_root = ROOT / "var" / "bench-media"
    ensure_database(args.database_url)
    print(f"Preparing {args.readers} readers x {args.cases} cases on {args.database_url} ...", flush=True)
    sessions = prepare(args.database_url, args.readers, args.cases, media_root)
    # Django's settings log INFO to the console and httpx logs every request at INFO: the load generator (forked
    # from here) would spend its CPU writing thousands of lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.db import connection

    connection.close()
    env = {**os.environ, "DATABASE_URL": args.database_url, "MEDIA_ROOT": str(media_root), "DEBUG": "0"}
    access_log = ROOT / "var" / "bench-access.log"
    access_log.unlink(missing_ok=True)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            str(args.keep_alive),
            "--log-level",
            "warning",
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            "%(m)s %(U)s %(s)s %(D)s",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{args.port}"
    before = _children_cpu()
    try:
        _wait_for(base)
        result = load_in_processes(base, sessions, args)
        result["generator_cpu"] = _children_cpu() - before  # the pool's processes have exited and been waited for
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    result["server_cpu"] = _children_cpu() - before - result["generator_cpu"]  # gunicorn, its start-up included

    from readerstudy.models import Reading

    stored = Reading.objects.filter(item__session__study__name="Load test").count()
    report(args, result, stored, server_timings(access_log))


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished and waited-for children, and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait_for(base: str) -> None:
    import httpx

    for _ in range(100):
        try:
            httpx.get(f"{base}/accounts/login/", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def report(args, result: dict, stored: int, server: dict[str, list[float]]) -> None:
    def ms(values, q):
        return f"{1000 * percentile(values, q):7.1f}"

    total_requests = len(result["submit"]) + len(result["image"])
    print()
    print(f"readers {args.readers}, think {args.think} s, gunicorn {args.workers} workers x {args.threads} threads")
    print(f"{'':24} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    rows = [
        ("submit-and-next, client", result["submit"]),
        ("next image, client", result["image"]),
        ("both, client", result["loop"]),
        ("submit-and-next, server", server["submit"]),
        ("next image, server", server["image"]),
    ]
    for name, values in rows:
        print(f"{name:24} {ms(values, 50)} {ms(values, 95)} {ms(values, 99)} {1000 * max(values or [0]):7.1f}")
    print(
        f"requests/s {total_requests / result['seconds']:.1f} over {result['seconds']:.1f} s; readings/s "
        f"{result['accepted'] / result['seconds']:.1f}"
    )
    seconds = result["seconds"]
    print(
        f"CPU: gunicorn {result['server_cpu']:.1f} s ({100 * result['server_cpu'] / seconds:.0f}% of one core), "
        f"load generator {result['generator_cpu']:.1f} s ({100 * result['generator_cpu'] / seconds:.0f}%), "
        f"on {os.cpu_count()} cores"
    )
    print(
        f"errors {len(result['errors'])}; accepted readings {result['accepted']}; in the database {stored}; "
        f"lost {result['accepted'] - stored}"
    )
    if result["errors"]:
        print("first errors:", result["errors"][:5])
    if result["accepted"] != stored:
        raise SystemExit("Readings were lost.")


if __name__ == "__main__":
    main()
