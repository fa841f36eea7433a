from django.db import migrations

from cordum.decisions import storage


class Migration(migrations.Migration):
    dependencies = [("decisions", "0001_initial")]

    operations = [migrations.RunPython(storage.tune_staging_table, migrations.RunPython.noop)]
