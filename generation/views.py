"""Generation pages for coordinators and admins: start a batch, watch it (htmx polling), cancel it, browse its
images with their provenance, and add them to a study. Readers get 403 everywhere."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation.batch_check import BatchInvalid
from generation.forms import AddToStudyForm, BatchForm
from generation.models import BatchImage, GenerationBatch
from generation.roots import model_roots
from generation.selectors import (
    batch_failures,
    batch_gallery,
    batch_is_stalled,
    batch_list,
    batch_progress,
    batch_studies,
    model_folders,
)
from generation.services import batch_add_to_study, batch_cancel, batch_start
from readerstudy.roles import coordinator_required

RECENT_BATCHES = 25


@coordinator_required
def batch_list_view(request: HttpRequest) -> HttpResponse:
    """The form for a new batch beside the list of recent batches."""
    # ?adapter=... preselects an adapter (a finished training run links here).
    initial = {"adapter": request.GET["adapter"]} if request.GET.get("adapter") else None
    form = BatchForm(request.POST or None, request.FILES or None, folders=model_folders(), initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            batch = batch_start(created_by=request.user, request=form.batch_request)
        except BatchInvalid as invalid:  # a folder changed between the form's check and the start
            for messages_ in invalid.errors.values():
                for message in messages_:
                    form.add_error(None, message)
        else:
            messages.success(request, f"Batch “{batch.name}” queued: {batch.total} images.")
            return redirect("generation:batch_detail", batch_pk=batch.pk)
    context = {"form": form, "batches": batch_list()[:RECENT_BATCHES], "roots": model_roots()}
    return render(request, "generation/batch_list.html", context)


def _batch_context(request: HttpRequest, batch: GenerationBatch) -> dict:
    return {
        "batch": batch,
        "progress": batch_progress(batch=batch),
        "gallery": batch_gallery(batch=batch, page=request.GET.get("page")),
        "failures": batch_failures(batch=batch),
        "studies": batch_studies(batch=batch),
        "stalled": batch_is_stalled(batch=batch),
    }


@coordinator_required
@require_GET
def batch_detail(request: HttpRequest, batch_pk: int) -> HttpResponse:
    batch = get_object_or_404(GenerationBatch.objects.select_related("created_by"), pk=batch_pk)
    context = _batch_context(request, batch)
    part = request.GET.get("part")
    if request.headers.get("HX-Request") and part in {"status", "gallery"}:
        return render(request, f"generation/batch_detail.html#{part}", context)
    context["add_form"] = AddToStudyForm()
    return render(request, "generation/batch_detail.html", context)


@coordinator_required
@require_POST
def batch_cancel_view(request: HttpRequest, batch_pk: int) -> HttpResponse:
    batch = get_object_or_404(GenerationBatch, pk=batch_pk)
    if batch.is_finished:
        messages.error(request, f"The batch is already {batch.get_status_display().lower()}.")
    else:
        batch = batch_cancel(batch=batch)
        if batch.status == GenerationBatch.Status.CANCELLED:
            messages.success(request, "Batch cancelled: no further images will be added.")
        else:  # it finished while the request was on its way
            messages.error(request, f"The batch is already {batch.get_status_display().lower()}.")
    return redirect("generation:batch_detail", batch_pk=batch.pk)


@coordinator_required
@require_POST
def batch_add_to_study_view(request: HttpRequest, batch_pk: int) -> HttpResponse:
    batch = get_object_or_404(GenerationBatch, pk=batch_pk)
    form = AddToStudyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a study to add the images to.")
        return redirect("generation:batch_detail", batch_pk=batch.pk)
    study = form.cleaned_data["study"]
    report = batch_add_to_study(batch=batch, study=study, is_practice=form.cleaned_data["is_practice"])
    level = messages.success if report.added or not report.refused else messages.error
    level(request, f"{study.name}: {report.summary()}.")
    for index, reason in report.refused[:5]:
        messages.error(request, f"Image {index + 1}: {reason}")
    return redirect("generation:batch_detail", batch_pk=batch.pk)


def _image(batch_pk: int, index: int) -> BatchImage:
    return get_object_or_404(BatchImage.objects.select_related("batch"), batch_id=batch_pk, index=index)


@coordinator_required
@require_GET
def image_detail(request: HttpRequest, batch_pk: int, index: int) -> HttpResponse:
    """An image with its full provenance (a partial for the gallery's dialog, or a page of its own)."""
    image = _image(batch_pk, index)
    context = {
        "batch": image.batch,
        "image": image,
        "cases": image.cases.select_related("study"),
        "provenance_json": json.dumps(image.provenance, indent=2, sort_keys=True),
    }
    if request.headers.get("HX-Request"):
        return render(request, "generation/image_detail.html#provenance", context)
    return render(request, "generation/image_detail.html", context)


def _file_response(stored, content_type: str, filename: str | None = None) -> FileResponse:
    if not stored:
        raise Http404("This image has no such file.")
    try:
        handle = stored.open("rb")
    except OSError as error:
        raise Http404("The image file is missing.") from error
    response = FileResponse(handle, content_type=content_type, as_attachment=filename is not None, filename=filename)
    # Coordinator-only and fixed once written (a batch image never changes): cache privately.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@coordinator_required
@require_GET
def image_png(request: HttpRequest, batch_pk: int, index: int) -> FileResponse:
    image = _image(batch_pk, index)
    if image.status != BatchImage.Status.DONE:
        raise Http404("This image is not generated yet.")
    return _file_response(image.png, "image/png")


@coordinator_required
@require_GET
def image_dicom(request: HttpRequest, batch_pk: int, index: int) -> FileResponse:
    image = _image(batch_pk, index)
    if image.status != BatchImage.Status.DONE:
        raise Http404("This image is not generated yet.")
    return _file_response(image.dicom, "application/dicom", f"batch-{batch_pk}-{index + 1:06d}.dcm")
