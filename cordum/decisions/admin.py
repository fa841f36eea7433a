"""Read-only admin views of the pipeline's internals (quarantined batches, checkpoints, export jobs)."""

from django.contrib import admin

from cordum.decisions.models import ChainCheckpoint, ChainHead, ExportJob, IngestBatch


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(IngestBatch)
class IngestBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "agent", "record_count", "received_at", "error")
    list_filter = ("organization",)
    exclude = ("payload",)


@admin.register(ChainHead)
class ChainHeadAdmin(ReadOnlyAdmin):
    list_display = ("organization", "seq", "hash", "recorded_at")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ChainCheckpoint)
class ChainCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("organization", "seq", "partition", "record_count", "recorded_before", "created_at")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "requested_by", "format", "status", "done", "total", "created_at")
