"""Run the whole demo on one machine with embedded defaults: migrate, seed, start a Celery worker (file-based
broker, nothing to install) and serve the site. Stop it with Ctrl-C; the worker stops with it."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, create the demo, start a Celery worker and serve the site (embedded defaults)."

    def add_arguments(self, parser):
        parser.add_argument("--real-dir", action="append", type=Path, default=[])
        parser.add_argument("--synthetic-dir", action="append", type=Path, default=[])
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the Celery worker.")

    def handle(self, *args, real_dir, synthetic_dir, addrport, no_worker, **options):
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        demo_args = [f"--real-dir={d}" for d in real_dir] + [f"--synthetic-dir={d}" for d in synthetic_dir]
        call_command("demo", *demo_args)
        if not settings.IMPORT_ROOTS:
            # Let the demo coordinator import more images from the folders the demo was started with.
            settings.IMPORT_ROOTS = sorted({Path(d).resolve() for d in [*real_dir, *synthetic_dir]})
        if settings.IMPORT_ROOTS:
            roots = ", ".join(str(root) for root in settings.IMPORT_ROOTS)
            self.stdout.write(f"Coordinators may import server folders inside: {roots}")
        if not no_worker:
            # The CPU demo worker runs torch on one thread: on small machines OpenMP threads spin-waiting for cores
            # made the demo model up to 10x slower (benchmarks/README.md, generation section).
            os.environ.setdefault("ML_CPU_THREADS", "1")
            start_worker(self.stdout)
        self.stdout.write(self.style.SUCCESS(f"Open http://{addrport}/ and log in with an account above."))
        call_command("runserver", addrport, use_reloader=False, insecure_serving=True)


def start_worker(stdout) -> subprocess.Popen:
    """A Celery worker for both queues, as a child process that ends when the demo ends."""
    log_path = Path(settings.VAR_DIR) / "worker.log"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--queues",
        "celery,gpu",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
    ]
    log = log_path.open("a")
    worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    stdout.write(f"Celery worker started (pid {worker.pid}); its log is {log_path}.")

    def stop() -> None:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()

    atexit.register(stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return worker
