"""manage.py evidence_retention --keep-months N --export-dir DIR [--dry-run]: retire whole old month partitions."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cordum.common.errors import CordumError
from cordum.decisions.retention import partition_retire, partitions_to_drop


class Command(BaseCommand):
    help = ("Export, checkpoint (signed last hash per organisation) and drop evidence partitions older than "
            "--keep-months. No row is ever updated or deleted.")

    def add_arguments(self, parser):
        parser.add_argument("--keep-months", type=int, required=True, help="full months to keep besides the current one")
        parser.add_argument("--export-dir", default=str(Path(settings.STATE_DIR) / "evidence-archive"))
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, **options):
        if options["keep_months"] < 1:
            raise CommandError("--keep-months must be at least 1.")
        todo = partitions_to_drop(keep_months=options["keep_months"])
        if not todo:
            self.stdout.write("Nothing to retire.")
            return
        for name, month in todo:
            if options["dry_run"]:
                self.stdout.write(f"would retire {name} ({month:%Y-%m})")
                continue
            try:
                dropped = partition_retire(name=name, month=month, export_dir=Path(options["export_dir"]))
            except CordumError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(f"retired {dropped.name}: {dropped.records} records exported to {dropped.export_path}, "
                              f"{dropped.checkpoints} checkpoint(s) signed")
