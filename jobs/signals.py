"""Worker start-up: a worker that starts (often the one replacing a killed worker) re-queues every kind of job a
dead worker left. Connected by importing this module from `config/celery.py`; nothing here imports Django models
at import time."""

from __future__ import annotations

import logging

from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@worker_ready.connect
def _on_worker_ready(**_kwargs) -> None:
    from jobs.runner import requeue_all_stale

    try:
        requeued = requeue_all_stale()
    except Exception:  # a worker must start even when the database is briefly unreachable
        logger.exception("Could not check for stalled background jobs.")
        return
    for label, pks in requeued.items():
        logger.warning("Re-queued stalled %s: %s", label, ", ".join(map(str, pks)))
