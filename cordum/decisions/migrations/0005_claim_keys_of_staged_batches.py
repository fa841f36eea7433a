"""Idempotency keys are now claimed when a batch is staged, and the writer trusts staged batches.

Batches staged before this change (still waiting for the writer) had no keys claimed: claim them here, in
arrival order, and drop from each batch the records whose keys were already taken (stored or staged before),
exactly as an upload arriving now would be staged.
"""

from django.db import migrations


def claim_keys_of_pending_batches(apps, schema_editor):
    IngestBatch = apps.get_model("decisions", "IngestBatch")
    EvidenceKey = apps.get_model("decisions", "EvidenceKey")
    for batch in IngestBatch.objects.filter(error="").order_by("id").iterator():
        lines = bytes(batch.payload).decode().split("\n")
        entries = [lines[i:i + 3] for i in range(0, len(lines) - 2, 3)]
        ids = {entry[0] for entry in entries}
        taken = set(EvidenceKey.objects.filter(organization_id=batch.organization_id, record_id__in=ids)
                    .values_list("record_id", flat=True))
        kept, seen = [], set(taken)
        for entry in entries:
            if entry[0] not in seen:
                seen.add(entry[0])
                kept.append(entry)
        EvidenceKey.objects.bulk_create(
            [EvidenceKey(organization_id=batch.organization_id, record_id=entry[0]) for entry in kept])
        if not kept:
            batch.delete()
        elif len(kept) != len(entries):
            batch.payload = "\n".join("\n".join(entry) for entry in kept).encode()
            batch.record_count = len(kept)
            batch.save(update_fields=["payload", "record_count"])


class Migration(migrations.Migration):

    dependencies = [
        ("decisions", "0004_evidencekey_no_org_index"),
    ]

    operations = [
        migrations.RunPython(claim_keys_of_pending_batches, migrations.RunPython.noop),
    ]
