"""Cleanup pages for coordinators and admins: start a job on a study's cases or a generation batch, watch it (htmx
polling), cancel or resume it, and review its images (before/after, mask, boxes; accept or reject). Readers get 403
everywhere."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cleanup.forms import CleanupJobForm
from cleanup.models import CleanupItem, CleanupJob
from cleanup.review import cleanup_item_accept, cleanup_item_reject, cleanup_job_accept_unchanged
from cleanup.selectors import item_boxes, job_is_stalled, job_items, job_list, job_progress, review_place
from cleanup.services import (
    CleanupRefused,
    cleanup_job_cancel,
    cleanup_job_resume,
    cleanup_job_start,
    cleanup_job_start_for_batch,
)
from generation.models import GenerationBatch
from readerstudy.models import Study
from readerstudy.roles import coordinator_required

RECENT_JOBS = 50
RECENT_BATCHES = 10
PREVIEW_KINDS = {"before": "preview_before", "after": "preview_after", "mask": "preview_mask"}


@coordinator_required
@require_GET
def job_list_view(request: HttpRequest) -> HttpResponse:
    studies = Study.objects.annotate(case_count=Count("cases")).order_by("-created_at")
    batches = GenerationBatch.objects.order_by("-created_at")[:RECENT_BATCHES]
    context = {"jobs": job_list()[:RECENT_JOBS], "studies": studies, "batches": batches}
    return render(request, "cleanup/job_list.html", context)


@coordinator_required
def job_new(request: HttpRequest, study_pk: int) -> HttpResponse:
    """Choose the cases (all, one class, or picked one by one), clean or check, and the settings."""
    study = get_object_or_404(Study, pk=study_pk)
    mode = request.GET.get("mode") if request.GET.get("mode") in CleanupJob.Mode.values else CleanupJob.Mode.CLEAN
    form = CleanupJobForm(request.POST or None, study=study, initial={"mode": mode})
    if request.method == "POST" and form.is_valid():
        try:
            job = cleanup_job_start(
                created_by=request.user,
                study=study,
                cases=form.selected_cases,
                mode=form.cleaned_data["mode"],
                config=form.config,
                scope=form.cleaned_data["scope"],
            )
        except CleanupRefused as refused:
            form.add_error(None, refused.message)
        else:
            messages.success(request, f"{job.get_mode_display()} queued for {job.total} images.")
            return redirect("cleanup:job_detail", job_pk=job.pk)
    cases = study.cases.order_by("id")
    return render(request, "cleanup/job_new.html", {"study": study, "form": form, "cases": cases})


@coordinator_required
def job_new_for_batch(request: HttpRequest, batch_pk: int) -> HttpResponse:
    """Clean every image of a generation batch, once the batch has finished (it may still be running)."""
    batch = get_object_or_404(GenerationBatch, pk=batch_pk)
    form = CleanupJobForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = cleanup_job_start_for_batch(created_by=request.user, batch=batch, config=form.config)
        except CleanupRefused as refused:
            form.add_error(None, refused.message)
        else:
            when = "now" if batch.is_finished else "when the batch has finished"
            messages.success(request, f"Cleanup of “{batch.name}” queued: it starts {when}.")
            return redirect("cleanup:job_detail", job_pk=job.pk)
    return render(request, "cleanup/job_new.html", {"batch": batch, "form": form})


def _job_context(job: CleanupJob) -> dict:
    return {
        "job": job,
        "study": job.study,
        "batch": job.batch,
        "progress": job_progress(job=job),
        "items": job_items(job=job),
        "stalled": job_is_stalled(job=job),
    }


@coordinator_required
@require_GET
def job_detail(request: HttpRequest, job_pk: int) -> HttpResponse:
    job = get_object_or_404(CleanupJob.objects.select_related("study", "batch", "created_by"), pk=job_pk)
    template = "cleanup/job_detail.html#job" if request.headers.get("HX-Request") else "cleanup/job_detail.html"
    return render(request, template, _job_context(job))


@coordinator_required
@require_POST
def job_cancel(request: HttpRequest, job_pk: int) -> HttpResponse:
    job = cleanup_job_cancel(job=get_object_or_404(CleanupJob, pk=job_pk))
    if job.status == CleanupJob.Status.CANCELLED:
        messages.success(request, "Job cancelled: no further images will be processed.")
    else:
        messages.error(request, f"The job is already {job.get_status_display().lower()}.")
    return redirect("cleanup:job_detail", job_pk=job.pk)


@coordinator_required
@require_POST
def job_resume(request: HttpRequest, job_pk: int) -> HttpResponse:
    job = get_object_or_404(CleanupJob, pk=job_pk)
    try:
        cleanup_job_resume(job=job)
    except CleanupRefused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, "Job sent to a worker again; images already processed are not redone.")
    return redirect("cleanup:job_detail", job_pk=job.pk)


@coordinator_required
@require_POST
def job_accept_unchanged(request: HttpRequest, job_pk: int) -> HttpResponse:
    job = get_object_or_404(CleanupJob, pk=job_pk)
    report = cleanup_job_accept_unchanged(job=job, reviewer=request.user)
    messages.success(request, f"Accepted {report.accepted} unchanged image{'s' if report.accepted != 1 else ''}.")
    for position, reason in report.refused[:5]:
        messages.error(request, f"Image {position + 1}: {reason}")
    back = "cleanup:job_review" if request.POST.get("from") == "review" else "cleanup:job_detail"
    return redirect(back, job_pk=job.pk)


def _review_context(job: CleanupJob, item_pk: int | None, *, error: str = "") -> dict:
    place = review_place(job=job, item_pk=item_pk)
    return {
        "job": job,
        "study": job.study,
        "batch": job.batch,
        "place": place,
        "item": place.item if place else None,
        "boxes": item_boxes(item=place.item) if place else [],
        "progress": job_progress(job=job),
        "error": error,
    }


def _item_pk(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@coordinator_required
@require_GET
def job_review(request: HttpRequest, job_pk: int) -> HttpResponse:
    """One image at a time: before/after slider, mask overlay, boxes with their OCR text, accept or reject."""
    job = get_object_or_404(CleanupJob.objects.select_related("study", "batch"), pk=job_pk)
    context = _review_context(job, _item_pk(request.GET.get("item")))
    template = "cleanup/review.html#review" if request.headers.get("HX-Request") else "cleanup/review.html"
    return render(request, template, context)


@coordinator_required
@require_POST
def item_decide(request: HttpRequest, item_pk: int) -> HttpResponse:
    """Accept or reject one image, then show the next one still to review (htmx) or redirect to it."""
    item = get_object_or_404(CleanupItem.objects.select_related("job__study", "job__batch"), pk=item_pk)
    decision = request.POST.get("decision")
    error = ""
    shown = item.pk
    try:
        if decision == "accept":
            item = cleanup_item_accept(item=item, reviewer=request.user)
        elif decision == "reject":
            item = cleanup_item_reject(item=item, reviewer=request.user)
        else:
            raise CleanupRefused("Choose accept or reject.")
    except CleanupRefused as refused:
        error = refused.message
    else:
        place = review_place(job=item.job, item_pk=item.pk)
        following = place.next_to_review if place else None
        shown = following.pk if following else item.pk
    address = f"{reverse('cleanup:job_review', args=[item.job_id])}?item={shown}"
    if request.headers.get("HX-Request"):
        response = render(request, "cleanup/review.html#review", _review_context(item.job, shown, error=error))
        response["HX-Push-Url"] = address
        return response
    if error:
        messages.error(request, error)
    return redirect(address)


@coordinator_required
@require_GET
def item_image(request: HttpRequest, item_pk: int, kind: str) -> FileResponse:
    """A review preview: the original (before), the cleaned image (after) or the mask overlay, at preview size."""
    if kind not in PREVIEW_KINDS:
        raise Http404("No such preview.")
    item = get_object_or_404(CleanupItem, pk=item_pk)
    stored = getattr(item, PREVIEW_KINDS[kind])
    if not stored:
        raise Http404("This image has no such preview.")
    try:
        handle = stored.open("rb")
    except OSError as error:
        raise Http404("The preview file is missing.") from error
    response = FileResponse(handle, content_type="image/png")
    del response["Content-Disposition"]
    # Coordinator-only; a rerun of the image rewrites the same name, so keep the cache short.
    response["Cache-Control"] = "private, max-age=300"
    return response
