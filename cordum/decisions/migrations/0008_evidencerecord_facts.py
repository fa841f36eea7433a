"""Evidence records carry `facts`: what the sidecar observed about a call beyond its decision (secrets masked in
the tool result: kinds and counts). Added like `root` (0006): a plain ADD COLUMN on the raw-SQL table; empty
facts are not part of a record's hashed document (storage.HASHED_WHEN_SET), so every older record still
verifies.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("decisions", "0007_chain_verification"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="evidencerecord",
                    name="facts",
                    field=models.TextField(blank=True, default=""),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE decisions_evidencerecord ADD COLUMN facts text NOT NULL DEFAULT ''",
                    "ALTER TABLE decisions_evidencerecord DROP COLUMN facts",
                ),
            ],
        ),
    ]
