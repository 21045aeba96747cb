"""Worker start-up hook for cleanup: jobs a dead worker left go to a worker again.

Connected by importing this module from `config/celery.py`; nothing here imports models at import time.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@worker_ready.connect
def _on_worker_ready(**_kwargs) -> None:
    from cleanup.services import cleanup_jobs_requeue_stale

    try:
        requeued = cleanup_jobs_requeue_stale()
    except Exception:  # a worker must start even when the database is briefly unreachable
        logger.exception("Could not check for stalled cleanup jobs.")
        return
    if requeued:
        logger.warning("Re-queued stalled cleanup jobs: %s", ", ".join(map(str, requeued)))
