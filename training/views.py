"""Training pages for coordinators and admins: import a dataset, start a LoRA run, watch it (htmx polling: step,
loss curve, throughput, validation images), cancel it, and go from a finished run to a generation batch."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from readerstudy.roles import coordinator_required
from training.forms import DatasetForm, RunForm
from training.models import TrainingDataset, TrainingRun
from training.selectors import dataset_list, loss_curve, run_list, throughput
from training.services import RunRefused, dataset_import_from_form, run_cancel, run_start


@coordinator_required
def training_home(request: HttpRequest) -> HttpResponse:
    context = {
        **_lists(),
        "dataset_form": DatasetForm(),
        "run_form": RunForm(initial={"dataset": request.GET.get("dataset")}),
    }
    return render(request, "training/home.html", context)


@coordinator_required
@require_POST
def dataset_new(request: HttpRequest) -> HttpResponse:
    form = DatasetForm(request.POST)
    if form.is_valid():
        result = dataset_import_from_form(created_by=request.user, form=form)
        if result.dataset is not None:
            messages.success(request, f"Dataset “{result.dataset.name}”: {result.summary()}")
            return redirect("training:dataset_detail", dataset_pk=result.dataset.pk)
        form.add_error(None, result.refusal or result.summary())
        context = {"dataset_form": form, "report": result, "run_form": RunForm(), **_lists()}
        return render(request, "training/home.html", context, status=400)
    context = {"dataset_form": form, "run_form": RunForm(), **_lists()}
    return render(request, "training/home.html", context, status=400)


@coordinator_required
@require_GET
def dataset_detail(request: HttpRequest, dataset_pk: int) -> HttpResponse:
    dataset = get_object_or_404(TrainingDataset, pk=dataset_pk)
    context = {
        "dataset": dataset,
        "examples": dataset.examples.order_by("manifest_line")[:50],
        "truncated": dataset.examples.filter(truncated=True).order_by("manifest_line")[:50],
        "runs": dataset.runs.order_by("-created_at"),
    }
    return render(request, "training/dataset_detail.html", context)


@coordinator_required
@require_POST
def run_new(request: HttpRequest) -> HttpResponse:
    form = RunForm(request.POST)
    if form.is_valid():
        try:
            run = run_start(
                created_by=request.user,
                dataset=form.cleaned_data["dataset"],
                base_model=form.cleaned_data["base_model"],
                settings_=form.training_settings(),
                name=form.cleaned_data["name"],
            )
        except RunRefused as refused:
            for message in refused.errors.values():
                form.add_error(None, message)
        except ValueError as error:  # the settings' own checks (training.loop.TrainingSettings.problems)
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Training run “{run.name}” queued: {run.total} steps.")
            return redirect("training:run_detail", run_pk=run.pk)
    context = {"run_form": form, "dataset_form": DatasetForm(), **_lists()}
    return render(request, "training/home.html", context, status=400)


def _lists() -> dict:
    return {"datasets": dataset_list()[:25], "runs": run_list()[:25]}


@coordinator_required
@require_GET
def run_detail(request: HttpRequest, run_pk: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("dataset", "created_by"), pk=run_pk)
    context = {
        "run": run,
        "curve": loss_curve(run=run),
        "throughput": throughput(run=run),
        "validation": list(reversed(run.validation))[:6],
        "generate_url": reverse("generation:batch_list") + "?" + urlencode({"adapter": run.adapter_dir})
        if run.adapter_dir
        else "",
    }
    if request.GET.get("part") == "status":
        return render(request, "training/run_detail.html#status", context)
    return render(request, "training/run_detail.html", context)


@coordinator_required
@require_POST
def run_cancel_view(request: HttpRequest, run_pk: int) -> HttpResponse:
    run = run_cancel(run=get_object_or_404(TrainingRun, pk=run_pk))
    messages.info(request, f"Training run “{run.name}”: {run.get_status_display().lower()}.")
    return redirect("training:run_detail", run_pk=run.pk)


@coordinator_required
@require_GET
def validation_png(request: HttpRequest, run_pk: int, step: int, index: int) -> FileResponse:
    run = get_object_or_404(TrainingRun, pk=run_pk)
    entry = next((entry for entry in run.validation if entry["step"] == step), None)
    if entry is None or not 0 <= index < len(entry["images"]):
        raise Http404
    try:
        handle = default_storage.open(entry["images"][index]["file"], "rb")
    except FileNotFoundError as exc:
        raise Http404 from exc
    return FileResponse(handle, content_type="image/png")
