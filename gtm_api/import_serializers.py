"""Bulk lead import input and output serializers."""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gtm_api.models import ImportFormat, ImportMode, ImportSource, ImportStatus, LeadImport
from neuronx.serializers import StrictInput, StrictQuery

MAX_INLINE_LEADS = 1000
MAX_SOURCE_URL_LENGTH = 2048


class _ImportOptions(StrictInput):
    mode = serializers.ChoiceField(
        choices=ImportMode.choices,
        default=ImportMode.CREATE,
        help_text="`create`: a row whose `external_id` or `email` is taken is a row error "
        "(`lead_exists`). `upsert`: such a row updates that lead (matched on `external_id`, "
        "then `email`); fields the row leaves empty keep their stored value.",
    )
    dry_run = serializers.BooleanField(
        default=False,
        help_text="Validate and match every row and report the errors, but write no lead. "
        "`counts.created`/`updated` then say what the import would do.",
    )


class _FormatOption(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=ImportFormat.choices,
        required=False,
        help_text="`csv` or `ndjson`; by default read from the media type, the file name "
        "(`.csv`, `.ndjson`, `.jsonl`) or the first character.",
    )


class LeadImportUploadInput(_FormatOption, _ImportOptions):
    reads_text = True  # multipart form fields

    file = serializers.FileField(
        allow_empty_file=True,
        help_text="A CSV file whose header row names lead fields, or NDJSON (one lead object "
        f"per line). At most {settings.LEAD_IMPORT_MAX_FILE_BYTES} bytes and "
        f"{settings.LEAD_IMPORT_MAX_ROWS} rows, UTF-8.",
    )


class LeadImportUrlInput(_FormatOption, _ImportOptions):
    source_url = serializers.CharField(
        max_length=MAX_SOURCE_URL_LENGTH,
        help_text="An `https` URL the import fetches the file from (same formats and limits "
        "as an upload). It must not resolve to a private, loopback or link-local address, and "
        "redirects are followed only to URLs that pass the same checks.",
    )


class LeadImportInlineInput(_ImportOptions):
    leads = serializers.ListField(
        child=serializers.JSONField(allow_null=True),  # a null lead is a row error too
        min_length=1,
        max_length=MAX_INLINE_LEADS,
        help_text=f"1–{MAX_INLINE_LEADS} lead objects, each as `POST /v1/leads` takes it "
        "(consents included). Invalid ones are row errors of the import, not a 422.",
    )


class LeadImportCountsOutput(serializers.Serializer):
    received = serializers.IntegerField(
        help_text="Rows in the file (0 until the import has read it through once)."
    )
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Rows with at least one error.")


class LeadImportProgressOutput(serializers.Serializer):
    processed = serializers.IntegerField(help_text="Rows done: created + updated + failed.")
    total = serializers.IntegerField(allow_null=True, help_text="Rows in the file, once known.")
    percent = serializers.FloatField(allow_null=True)


class LeadImportFailureOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class LeadImportLinksOutput(serializers.Serializer):
    self = serializers.CharField()
    errors = serializers.CharField()  # type: ignore[assignment]
    failed_rows = serializers.CharField()


class LeadImportOutput(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=ImportStatus.choices)
    mode = serializers.ChoiceField(choices=ImportMode.choices)
    dry_run = serializers.BooleanField()
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=ImportSource.choices
    )
    format = serializers.ChoiceField(choices=ImportFormat.choices, allow_null=True)
    file_name = serializers.CharField(allow_null=True)
    source_url = serializers.CharField(allow_null=True)
    size_bytes = serializers.IntegerField(allow_null=True)
    counts = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()

    def to_representation(self, instance: LeadImport) -> Any:
        data = super().to_representation(instance)
        for name in ("format", "file_name", "source_url"):
            data[name] = data[name] or None
        return data

    @extend_schema_field(LeadImportCountsOutput)
    def get_counts(self, job: LeadImport) -> dict[str, int]:
        return {
            "received": job.received,
            "created": job.created,
            "updated": job.updated,
            "failed": job.failed,
        }

    @extend_schema_field(LeadImportProgressOutput)
    def get_progress(self, job: LeadImport) -> dict[str, Any]:
        total = job.received or None
        return {
            "processed": job.processed,
            "total": total,
            "percent": round(100 * job.processed / total, 1) if total else None,
        }

    @extend_schema_field(LeadImportFailureOutput(allow_null=True))
    def get_error(self, job: LeadImport) -> dict[str, str] | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(LeadImportLinksOutput)
    def get_links(self, job: LeadImport) -> dict[str, str]:
        path = f"/v1/lead-imports/{job.id}"
        return {"self": path, "errors": f"{path}/errors", "failed_rows": f"{path}/failed-rows"}


class LeadImportRowErrorOutput(serializers.Serializer):
    row = serializers.IntegerField(
        help_text="1 for the first row after a CSV header, the first line of NDJSON, or the "
        "first inline lead; blank lines are not counted."
    )
    field = serializers.CharField(
        allow_null=True, help_text="The field (`email`, `consents[0].scope`…); null for the row."
    )
    code = serializers.CharField()
    message = serializers.CharField()

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)
        data["field"] = data["field"] or None
        return data


class LeadImportListQuery(StrictQuery):
    status = serializers.ChoiceField(choices=ImportStatus.choices, required=False)
