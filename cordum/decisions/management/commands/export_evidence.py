"""manage.py export_evidence: a filtered range of the evidence trail as JSONL or CSV, with progress.

The same filters, order and format as the explorer's export (cordum/decisions/exports.py), for ranges too
large to download through a browser, or for scripts. Progress goes to stderr, so `--output -` can pipe.
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from cordum.accounts.management.options import organization_arg
from cordum.common.errors import CordumError
from cordum.common.progress import TerminalProgress
from cordum.decisions.choices import ExportFormat
from cordum.decisions.exports import export_lines
from cordum.decisions.filters import FILTER_FIELDS, apply_filters, parse_filters
from cordum.decisions.models import EvidenceRecord

_FLAG_OF = {"q": "target-contains"}


class Command(BaseCommand):
    help = "Export a filtered range of an organisation's evidence records as JSONL or CSV (oldest first)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug (optional when there is only one)")
        parser.add_argument("--format", choices=ExportFormat.values, default=ExportFormat.JSONL)
        parser.add_argument("--output", "-o", required=True, help="file to write, or - for standard output")
        for name in FILTER_FIELDS:
            flag = _FLAG_OF.get(name, name.replace("_", "-"))
            parser.add_argument(f"--{flag}", dest=f"filter_{name}", metavar=name.upper(),
                                help="UTC date/time (2026-11-20 or 2026-11-20T09:00)" if name in ("start", "end")
                                else None)

    def handle(self, *args, org=None, format=ExportFormat.JSONL, output="-", **options):
        organization = organization_arg(org)
        raw = {name: options.get(f"filter_{name}") for name in FILTER_FIELDS if options.get(f"filter_{name}")}
        try:
            filters = parse_filters(raw)
        except CordumError as exc:
            raise CommandError(exc.message) from None
        qs = apply_filters(EvidenceRecord.objects.filter(organization=organization), filters)
        total = qs.count()
        progress = TerminalProgress(f"export {organization.slug}", total=total, unit="records", stream=self.stderr)
        out = sys.stdout.buffer if output == "-" else open(output, "wb")  # closed below
        try:
            for chunk in export_lines(qs, format, progress=progress):
                out.write(chunk)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        progress.finish(message=f"→ {output}")
