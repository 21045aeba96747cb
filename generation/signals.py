"""Worker start-up hooks for generation: ML runtime settings for the process (re-queueing work a dead worker left
is `jobs.signals`, for every kind of job).

Connected by importing this module from `config/celery.py`. Nothing here imports Django models or ML libraries at
import time: the Celery app is imported before Django is set up, and web processes never run these hooks.
"""

from __future__ import annotations

import os

from celery.signals import worker_init, worker_process_init


def apply_worker_environment() -> None:
    """Set the environment ML libraries read when they are first imported in this worker: ML_CPU_THREADS for
    OpenMP/MKL threads, and no progress bars. The generation service also sets torch's thread count before it
    loads a model, in case torch was imported earlier."""
    from django.conf import settings

    threads = settings.ML_CPU_THREADS
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@worker_init.connect
def _on_worker_init(**_kwargs) -> None:
    apply_worker_environment()


@worker_process_init.connect
def _on_worker_process_init(**_kwargs) -> None:
    # Pool child processes (prefork): the same settings, applied in the process that runs tasks.
    apply_worker_environment()
