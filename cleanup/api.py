"""REST API for text cleanup, under /api/cleanup/: start (on a study's cases or a generation batch), watch, cancel and
resume jobs; list their images; accept or reject.

Same permissions as the pages (coordinators and admins; readers get 403) and the same services: settings this
machine cannot run (Tesseract missing for an OCR detector, a model file that is not there) or an empty selection are
a 400 naming the problem, and create nothing.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from cleanup.models import CleanupItem, CleanupJob
from cleanup.pipeline import CleanupConfig
from cleanup.review import cleanup_item_accept, cleanup_item_reject, cleanup_job_accept_unchanged
from cleanup.selectors import job_items, job_list, job_progress, study_cases_for_scope
from cleanup.services import (
    CleanupRefused,
    cleanup_job_cancel,
    cleanup_job_resume,
    cleanup_job_start,
    cleanup_job_start_for_batch,
)
from generation.models import GenerationBatch
from readerstudy.api.permissions import IsCoordinator
from readerstudy.models import Study

# --- serializers ------------------------------------------------------------------------------------------------


class CleanupConfigSerializer(serializers.Serializer):
    """Cleanup settings (`cleanup.pipeline.CleanupConfig`); every field is optional and defaults as there."""

    detector = serializers.CharField(
        required=False, help_text="xray (default), ocr, glyphs, bars, or names joined by +."
    )
    detector_options = serializers.DictField(required=False)
    segmenter = serializers.ChoiceField(choices=["auto", "sam", "glyphs"], required=False)
    sam_checkpoint = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    sam_model_type = serializers.CharField(required=False)
    inpainter = serializers.ChoiceField(choices=["auto", "sd", "classical"], required=False)
    inpainting_model = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    prompt = serializers.CharField(required=False)
    negative_prompt = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    inpainting_steps = serializers.IntegerField(required=False, min_value=1, max_value=500)
    guidance_scale = serializers.FloatField(required=False, min_value=0)
    inpainting_size = serializers.IntegerField(required=False, min_value=64, max_value=2048)
    seed = serializers.IntegerField(required=False, min_value=0)
    classical_method = serializers.ChoiceField(choices=["telea", "ns", "biharmonic"], required=False)
    classical_radius = serializers.IntegerField(required=False, min_value=1, max_value=50)
    dilation_kernel = serializers.IntegerField(required=False, min_value=1, max_value=51)
    dilation_iterations = serializers.IntegerField(required=False, min_value=0, max_value=20)
    verify = serializers.BooleanField(required=False)
    device = serializers.CharField(required=False, help_text="auto (the worker's ML_DEVICE), cpu, cuda, xpu or mps.")


class CleanupJobSerializer(serializers.ModelSerializer):
    """A job with its progress."""

    created_by = serializers.CharField(source="created_by.username", read_only=True)
    progress = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField(help_text="The job's page, with live progress.")
    review_url = serializers.SerializerMethodField(help_text="The review page (clean jobs).")

    class Meta:
        model = CleanupJob
        fields = [
            "id",
            "study",
            "batch",
            "mode",
            "scope",
            "status",
            "total",
            "progress",
            "error",
            "config",
            "runs",
            "created_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "page_url",
            "review_url",
        ]
        read_only_fields = fields

    def get_progress(self, job) -> dict[str, int]:
        progress = job_progress(job=job)
        return {
            "processed": progress.processed,
            "pending": progress.pending,
            "percent": progress.percent,
            "done": progress.done,
            "failed": progress.failed,
            "cleaned": progress.cleaned,
            "unchanged": progress.unchanged,
            "with_text": progress.with_text,
            "accepted": progress.accepted,
            "rejected": progress.rejected,
            "to_review": progress.to_review,
        }

    def get_page_url(self, job) -> str:
        return self.context["request"].build_absolute_uri(reverse("cleanup:job_detail", args=[job.pk]))

    def get_review_url(self, job) -> str | None:
        if job.is_check:
            return None
        return self.context["request"].build_absolute_uri(reverse("cleanup:job_review", args=[job.pk]))


class CleanupJobCreateSerializer(serializers.Serializer):
    """A new job: on a study's cases (all of them, one class, or the `cases` listed with scope "selected"), or on
    every image of a generation `batch`, cleaned once the batch has finished (mode "clean" only)."""

    study = serializers.PrimaryKeyRelatedField(queryset=Study.objects.all(), required=False)
    batch = serializers.PrimaryKeyRelatedField(queryset=GenerationBatch.objects.all(), required=False)
    mode = serializers.ChoiceField(choices=CleanupJob.Mode.choices, default=CleanupJob.Mode.CLEAN)
    scope = serializers.ChoiceField(choices=CleanupJob.Scope.choices, default=CleanupJob.Scope.ALL)
    cases = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    config = CleanupConfigSerializer(required=False)

    def validate(self, data: dict) -> dict:
        if ("study" in data) == ("batch" in data):
            raise ValidationError({"study": ["Give either a study or a generation batch."]})
        if "batch" in data:
            if data["mode"] != CleanupJob.Mode.CLEAN or data["cases"]:
                raise ValidationError({"batch": ["A batch is cleaned as a whole: mode 'clean', no cases."]})
            return data
        if data["scope"] == CleanupJob.Scope.BATCH:
            raise ValidationError({"scope": ["The scope 'batch' goes with a generation batch."]})
        if data["scope"] == CleanupJob.Scope.SELECTED and not data["cases"]:
            raise ValidationError({"cases": ["List the cases to process, or choose another scope."]})
        if data["scope"] != CleanupJob.Scope.SELECTED and data["cases"]:
            raise ValidationError({"cases": ["Cases are listed only with the scope 'selected'."]})
        found = set(data["study"].cases.filter(pk__in=data["cases"]).values_list("pk", flat=True))
        missing = set(data["cases"]) - found
        if missing:
            raise ValidationError({"cases": [f"Not cases of this study: {', '.join(map(str, sorted(missing)))}."]})
        return data


class CleanupItemSerializer(serializers.ModelSerializer):
    """One image of a job: what was found and changed, and the review decision."""

    outcome = serializers.CharField(read_only=True, help_text="pending, failed, checked, cleaned or unchanged.")
    truth = serializers.SerializerMethodField(help_text="real or synthetic (generated images are synthetic).")
    reviewed_by = serializers.CharField(source="reviewed_by.username", read_only=True, default=None)
    mask_url = serializers.SerializerMethodField(help_text="Mask overlay preview (cleaned images).")
    before_url = serializers.SerializerMethodField()
    after_url = serializers.SerializerMethodField()

    class Meta:
        model = CleanupItem
        fields = [
            "id",
            "job",
            "position",
            "case",
            "batch_image",
            "truth",
            "status",
            "outcome",
            "changed",
            "text_regions",
            "served_text_regions",
            "residual_regions",
            "result",
            "seconds",
            "error",
            "review",
            "reviewed_by",
            "reviewed_at",
            "before_url",
            "after_url",
            "mask_url",
        ]
        read_only_fields = fields

    def get_truth(self, item) -> str:
        return item.case.truth if item.case_id is not None else "synthetic"

    def _preview(self, item, kind: str, stored) -> str | None:
        if not stored:
            return None
        return self.context["request"].build_absolute_uri(reverse("cleanup:item_image", args=[item.pk, kind]))

    def get_before_url(self, item) -> str | None:
        return self._preview(item, "before", item.preview_before)

    def get_after_url(self, item) -> str | None:
        return self._preview(item, "after", item.preview_after)

    def get_mask_url(self, item) -> str | None:
        return self._preview(item, "mask", item.preview_mask)


class BulkReviewSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    refused = serializers.ListField(child=serializers.DictField(), help_text="{position, reason} per refusal.")


def config_from_values(values: dict) -> CleanupConfig:
    """A CleanupConfig from validated `CleanupConfigSerializer` data (blank model paths mean none)."""
    known = {f.name for f in dataclass_fields(CleanupConfig)}
    values = {name: value for name, value in values.items() if name in known}
    for name in ("sam_checkpoint", "inpainting_model"):
        if name in values and not values[name]:
            values[name] = None
    try:
        return CleanupConfig(**values)
    except ValueError as error:
        raise ValidationError({"config": [str(error)]}) from error


def _refusal(refused: CleanupRefused, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    body = {"detail": refused.message}
    if refused.errors:
        body["errors"] = refused.errors
    return Response(body, status=code)


# --- views ------------------------------------------------------------------------------------------------------


class CleanupJobViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Cleanup jobs: start one on a study's cases, watch its progress, cancel or resume it, list its images."""

    permission_classes = [IsAuthenticated, IsCoordinator]

    def get_queryset(self):
        jobs = job_list()
        for name in ("study", "batch"):
            value = self.request.query_params.get(name)
            if value and value.isdigit():
                jobs = jobs.filter(**{f"{name}_id": value})
        return jobs

    def get_serializer_class(self):
        return CleanupJobCreateSerializer if self.action == "create" else CleanupJobSerializer

    @extend_schema(request=CleanupJobCreateSerializer, responses={201: CleanupJobSerializer})
    def create(self, request, *args, **kwargs):
        payload = CleanupJobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        config = config_from_values(dict(data.get("config") or {}))
        try:
            if "batch" in data:
                job = cleanup_job_start_for_batch(created_by=request.user, batch=data["batch"], config=config)
            else:
                study = data["study"]
                job = cleanup_job_start(
                    created_by=request.user,
                    study=study,
                    cases=study_cases_for_scope(study=study, scope=data["scope"], case_ids=data["cases"]),
                    mode=data["mode"],
                    config=config,
                    scope=data["scope"],
                )
        except CleanupRefused as refused:
            return _refusal(refused)
        body = CleanupJobSerializer(job, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=CleanupJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = cleanup_job_cancel(job=self.get_object())
        return Response(CleanupJobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=CleanupJobSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        try:
            job = cleanup_job_resume(job=self.get_object())
        except CleanupRefused as refused:
            return _refusal(refused, status.HTTP_409_CONFLICT)
        return Response(CleanupJobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=BulkReviewSerializer)
    @action(detail=True, methods=["post"], url_path="accept-unchanged")
    def accept_unchanged(self, request, pk=None):
        report = cleanup_job_accept_unchanged(job=self.get_object(), reviewer=request.user)
        refused = [{"position": position, "reason": reason} for position, reason in report.refused]
        return Response({"accepted": report.accepted, "refused": refused})

    @extend_schema(responses=CleanupItemSerializer(many=True))
    @action(detail=True, methods=["get"])
    def items(self, request, pk=None):
        page = self.paginate_queryset(job_items(job=self.get_object()))
        return self.get_paginated_response(
            CleanupItemSerializer(page, many=True, context=self.get_serializer_context()).data
        )


class CleanupItemViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One image of a job; accept or reject its cleanup (409 with the reason when that is not possible, e.g. the
    case already has readings)."""

    permission_classes = [IsAuthenticated, IsCoordinator]
    serializer_class = CleanupItemSerializer

    def get_queryset(self):
        return CleanupItem.objects.select_related("job", "case", "batch_image", "reviewed_by")

    def _decide(self, request, decide) -> Response:
        try:
            item = decide(item=self.get_object(), reviewer=request.user)
        except CleanupRefused as refused:
            return _refusal(refused, status.HTTP_409_CONFLICT)
        item = self.get_queryset().get(pk=item.pk)
        return Response(CleanupItemSerializer(item, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=CleanupItemSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return self._decide(request, cleanup_item_accept)

    @extend_schema(request=None, responses=CleanupItemSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, cleanup_item_reject)


router = SimpleRouter()
router.register("jobs", CleanupJobViewSet, basename="cleanup-job")
router.register("items", CleanupItemViewSet, basename="cleanup-item")
urlpatterns = router.urls
