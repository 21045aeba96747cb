"""Helpers for running cleanup jobs in tests: in-process, as a worker would, and reading back stored files."""

from __future__ import annotations

from cleanup.models import CleanupJob
from cleanup.pipeline import CleanupConfig
from cleanup.services import cleanup_job_start
from cleanup.worker import cleanup_job_run
from readerstudy.models import Study

# Cleaning without the verification pass where a test does not look at residual text: it halves the time.
FAST = CleanupConfig(verify=False)


def run_job(study: Study, user, *, mode: str = "clean", config: CleanupConfig = FAST, cases=None) -> CleanupJob:
    """Start a job on `cases` (default: all) and run it here, as a worker would."""
    job = cleanup_job_start(
        created_by=user,
        study=study,
        cases=list(cases if cases is not None else study.cases.order_by("id")),
        mode=mode,
        config=config,
        scope="all" if cases is None else "selected",
    )
    return cleanup_job_run(job_pk=job.pk, worker="test")


def stored_bytes(stored) -> bytes:
    with stored.open("rb") as handle:
        return handle.read()


def form_defaults() -> dict:
    """The cleanup job form as a coordinator leaves it after choosing nothing."""
    return {
        "mode": "clean",
        "scope": "all",
        "detector": "xray",
        "segmenter": "auto",
        "inpainter": "auto",
        "classical_method": "telea",
        "prompt": "No text, clean background",
        "inpainting_steps": 50,
        "guidance_scale": 7.5,
        "dilation_kernel": 5,
        "dilation_iterations": 2,
        "seed": 0,
        "verify": "on",
    }
