"""Reads for training pages: the loss curve as an inline SVG, validation grids, and the lists of datasets and
runs."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from training.models import TrainingDataset, TrainingRun

CURVE_WIDTH, CURVE_HEIGHT, CURVE_PAD = 640, 200, 28


@dataclass(frozen=True)
class LossCurve:
    """The loss curve of a run, drawn as an SVG polyline (coordinates as strings: no localised formatting)."""

    points: str
    steps: int
    low: float
    high: float
    last: float

    @property
    def width(self) -> int:
        return CURVE_WIDTH

    @property
    def height(self) -> int:
        return CURVE_HEIGHT


def loss_curve(*, run: TrainingRun) -> LossCurve | None:
    """The run's loss per step scaled into the SVG box (step on x from 0 to the planned total, loss on y from its
    lowest to its highest value); None before the first step."""
    log = [entry for entry in run.loss_log if entry.get("loss") is not None]
    if not log:
        return None
    losses = [float(entry["loss"]) for entry in log]
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    last_step = max(run.total, log[-1]["step"], 1)
    inner_w, inner_h = CURVE_WIDTH - 2 * CURVE_PAD, CURVE_HEIGHT - 2 * CURVE_PAD
    points = " ".join(
        f"{CURVE_PAD + inner_w * entry['step'] / last_step:.1f},"
        f"{CURVE_PAD + inner_h * (1 - (float(entry['loss']) - low) / span):.1f}"
        for entry in log
    )
    return LossCurve(points=points, steps=log[-1]["step"], low=low, high=high, last=losses[-1])


def dataset_list() -> QuerySet[TrainingDataset]:
    return TrainingDataset.objects.select_related("created_by").order_by("-created_at")


def run_list() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("dataset", "created_by").order_by("-created_at")


def throughput(*, run: TrainingRun) -> float | None:
    """Images per second of the latest reported step."""
    for entry in reversed(run.loss_log):
        if entry.get("images_per_second"):
            return float(entry["images_per_second"])
    return None
