"""Evidence records carry the agent's working root (so a simulation replays "{root}" and relative paths exactly).

The evidence table is created by raw SQL (partitioned on PostgreSQL, triggers on SQLite), so the column is
added the same way on both: a plain ADD COLUMN, which PostgreSQL propagates to every partition and which
never rewrites a row (the append-only triggers are not involved). Records chained before have an empty root,
which is not part of their hashed document (see storage.HASHED_WHEN_SET), so they still verify.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("decisions", "0005_claim_keys_of_staged_batches"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="evidencerecord",
                    name="root",
                    field=models.TextField(blank=True, default=""),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE decisions_evidencerecord ADD COLUMN root text NOT NULL DEFAULT ''",
                    "ALTER TABLE decisions_evidencerecord DROP COLUMN root",
                ),
            ],
        ),
    ]
