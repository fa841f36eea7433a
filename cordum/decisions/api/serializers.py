"""Schema-only serializers for the evidence API (validation is done by the fast batch validator)."""

from rest_framework import serializers


class EvidenceUploadSerializer(serializers.Serializer):
    records = serializers.ListField(child=serializers.DictField(), help_text="Evidence records (decision/outcome)")


class EvidenceAcceptedSerializer(serializers.Serializer):
    accepted = serializers.ListField(child=serializers.CharField())


class EvidencePageSerializer(serializers.Serializer):
    records = serializers.ListField(child=serializers.DictField())
    next_cursor = serializers.CharField(allow_null=True)
