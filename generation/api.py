"""REST API for generation batches, under /api/generation/: start, watch, cancel, list images, add to a study.

Same permissions as the pages (coordinators and admins; readers get 403) and the same services: a request with a
missing model folder, an unreadable adapter, an impossible size or bad prompts is a 400 naming each problem by field,
and creates nothing.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from generation.batch_check import BatchInvalid, BatchRequest, batch_check, prompts_from_template
from generation.models import BatchImage, GenerationBatch
from generation.pipeline import GenerationSettings
from generation.prompts import MAX_PROMPTS, PromptError, prompts_from_list
from generation.selectors import batch_list, model_folders
from generation.services import batch_add_to_study, batch_cancel, batch_start
from readerstudy.api.permissions import IsCoordinator
from readerstudy.models import Study

# --- serializers ------------------------------------------------------------------------------------------------


class BatchSerializer(serializers.ModelSerializer):
    """A batch with its progress."""

    created_by = serializers.CharField(source="created_by.username", read_only=True)
    done = serializers.IntegerField(read_only=True, help_text="Images generated.")
    failed = serializers.IntegerField(read_only=True, help_text="Images that failed (each with its error).")
    pending = serializers.SerializerMethodField(help_text="Images not generated yet.")
    percent = serializers.SerializerMethodField(help_text="Share of images processed (done or failed), 0-100.")
    page_url = serializers.SerializerMethodField(help_text="The batch's page, with live progress and gallery.")

    class Meta:
        model = GenerationBatch
        fields = [
            "id",
            "name",
            "status",
            "total",
            "done",
            "failed",
            "pending",
            "percent",
            "error",
            "generator_label",
            "is_demo_model",
            "base_model_dir",
            "adapter_dir",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "negative_prompt",
            "scheduler",
            "batch_size",
            "base_seed",
            "write_dicom",
            "runs",
            "created_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "page_url",
        ]
        read_only_fields = fields

    def get_pending(self, batch) -> int:
        return batch.total - batch.done - batch.failed

    def get_percent(self, batch) -> int:
        return round(100 * (batch.done + batch.failed) / batch.total) if batch.total else 0

    def get_page_url(self, batch) -> str:
        return self.context["request"].build_absolute_uri(reverse("generation:batch_detail", args=[batch.pk]))


class BatchCreateSerializer(serializers.Serializer):
    """A new batch. Prompts come either as a list (`prompts`, each repeated `images_per_prompt` times) or as a
    caption template with field values (`template`, `template_fields`); seeds either one per image (`seeds`) or
    from `base_seed` (image i gets base_seed + i; random when omitted)."""

    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    base_model = serializers.CharField(max_length=1000, help_text="Model folder, absolute or relative to MODEL_ROOT.")
    adapter = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    prompts = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False
    )
    images_per_prompt = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PROMPTS, default=1)
    template = serializers.CharField(required=False, max_length=2000, help_text="e.g. 'view_position = PA. {finding}'")
    template_fields = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text='e.g. {"finding": "100 x No findings, 100 x small right pleural effusion"}; "PA | AP" gives '
        "each alternative once.",
    )
    interleave = serializers.BooleanField(required=False, default=True)
    seeds = serializers.ListField(child=serializers.IntegerField(), required=False)
    base_seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    steps = serializers.IntegerField(required=False, default=75)
    guidance_scale = serializers.FloatField(required=False, default=4.0)
    width = serializers.IntegerField(required=False, default=512)
    height = serializers.IntegerField(required=False, default=512)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, default="")
    scheduler = serializers.CharField(required=False, default="default")
    batch_size = serializers.IntegerField(required=False, allow_null=True, default=None)
    write_dicom = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict) -> dict:
        has_list, has_template = "prompts" in attrs, "template" in attrs
        if has_list == has_template:
            raise ValidationError({"prompts": ["Give either `prompts` or `template` (with `template_fields`)."]})
        try:
            if has_list:
                prompts = prompts_from_list(attrs["prompts"])
                prompts = [prompt for prompt in prompts for _ in range(attrs["images_per_prompt"])]
            else:
                prompts = prompts_from_template(
                    attrs["template"], attrs.get("template_fields", {}), interleave=attrs["interleave"]
                )
        except PromptError as error:
            raise ValidationError({"template" if has_template else "prompts": [str(error)]}) from error
        request = BatchRequest(
            base_model=attrs["base_model"],
            adapter=attrs["adapter"],
            prompts=tuple(prompts),
            settings=GenerationSettings(
                steps=attrs["steps"],
                guidance_scale=attrs["guidance_scale"],
                width=attrs["width"],
                height=attrs["height"],
                negative_prompt=attrs["negative_prompt"],
                scheduler=attrs["scheduler"],
                batch_size=attrs["batch_size"],
            ),
            seeds=tuple(attrs["seeds"]) if "seeds" in attrs else None,
            base_seed=attrs["base_seed"],
            write_dicom=attrs["write_dicom"],
            name=attrs["name"],
        )
        try:
            batch_check(request)
        except BatchInvalid as invalid:
            raise ValidationError(
                {
                    "non_field_errors" if name == "__all__" else name: messages
                    for name, messages in invalid.errors.items()
                }
            ) from invalid
        return {"request": request}


class BatchImageSerializer(serializers.ModelSerializer):
    """One image of a batch, with its provenance and (once done) where to fetch its files."""

    png_url = serializers.SerializerMethodField()
    dicom_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchImage
        fields = [
            "index",
            "prompt",
            "seed",
            "status",
            "error",
            "seconds",
            "png_sha256",
            "png_url",
            "dicom_url",
            "provenance",
            "finished_at",
        ]
        read_only_fields = fields

    def _url(self, image: BatchImage, name: str) -> str | None:
        return self.context["request"].build_absolute_uri(
            reverse(f"generation:{name}", args=[image.batch_id, image.index])
        )

    def get_png_url(self, image: BatchImage) -> str | None:
        return self._url(image, "image_png") if image.status == BatchImage.Status.DONE else None

    def get_dicom_url(self, image: BatchImage) -> str | None:
        return self._url(image, "image_dicom") if image.status == BatchImage.Status.DONE and image.dicom else None


class AddToStudySerializer(serializers.Serializer):
    study = serializers.PrimaryKeyRelatedField(queryset=Study.objects.all())
    indices = serializers.ListField(
        child=serializers.IntegerField(min_value=0), required=False, help_text="Only these images (0-based)."
    )
    is_practice = serializers.BooleanField(required=False, default=False)


class RefusedImageSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    reason = serializers.CharField()


class AddToStudyReportSerializer(serializers.Serializer):
    study = serializers.IntegerField()
    summary = serializers.CharField()
    added = serializers.ListField(child=serializers.IntegerField(), help_text="Indices of images added now.")
    already_added = serializers.ListField(child=serializers.IntegerField())
    refused = RefusedImageSerializer(many=True)


class ModelFolderSerializer(serializers.Serializer):
    path = serializers.CharField()
    kind = serializers.ChoiceField(choices=["model", "adapter"])
    is_demo = serializers.BooleanField()


# --- views ------------------------------------------------------------------------------------------------------


class GenerationBatchViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Generation batches (coordinators and admins)."""

    permission_classes = [IsAuthenticated, IsCoordinator]
    serializer_class = BatchSerializer

    def get_queryset(self):
        return batch_list()

    @extend_schema(request=BatchCreateSerializer, responses={201: BatchSerializer})
    def create(self, request, *args, **kwargs):
        """Start a batch: checked like the form, then queued for a GPU worker."""
        payload = BatchCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            batch = batch_start(created_by=request.user, request=payload.validated_data["request"])
        except BatchInvalid as invalid:
            raise ValidationError(invalid.errors) from invalid
        body = BatchSerializer(self.get_queryset().get(pk=batch.pk), context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses=BatchImageSerializer(many=True))
    @action(detail=True, methods=["get"])
    def images(self, request, pk=None):
        """The batch's images in order, each with its status, error, provenance and file URLs."""
        batch = self.get_object()
        page = self.paginate_queryset(batch.images.order_by("index"))
        return self.get_paginated_response(BatchImageSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(request=None, responses=BatchSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running batch; once this answers "cancelled", no further image is added."""
        batch_cancel(batch=self.get_object())
        return Response(BatchSerializer(self.get_queryset().get(pk=pk), context={"request": request}).data)

    @extend_schema(request=AddToStudySerializer, responses=AddToStudyReportSerializer)
    @action(detail=True, methods=["post"], url_path="add-to-study")
    def add_to_study(self, request, pk=None):
        """Make the done images synthetic cases of a study; images already added there are skipped."""
        batch = self.get_object()
        payload = AddToStudySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        report = batch_add_to_study(
            batch=batch, study=data["study"], indices=data.get("indices"), is_practice=data["is_practice"]
        )
        body = {
            "study": report.study_id,
            "summary": report.summary(),
            "added": list(report.added),
            "already_added": list(report.already_added),
            "refused": [{"index": index, "reason": reason} for index, reason in report.refused],
        }
        return Response(AddToStudyReportSerializer(body).data)

    @extend_schema(responses=ModelFolderSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="model-folders")
    def model_folders(self, request):
        """Model and adapter folders found under the model roots, for `base_model` and `adapter`."""
        folders = [{"path": str(f.path), "kind": f.kind, "is_demo": f.is_demo} for f in model_folders()]
        return Response(ModelFolderSerializer(folders, many=True).data)


router = SimpleRouter()
router.register("batches", GenerationBatchViewSet, basename="generation-batch")
urlpatterns = router.urls
