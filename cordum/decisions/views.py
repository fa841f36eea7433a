"""Evidence explorer, record page, session timeline, exports. Thin adapters over selectors/exports.

Visibility is enforced in `selectors.evidence_visible` (every view goes through it): auditors and admins
see every team, anyone else with `view_own_team` only the teams of their membership.
"""

import orjson
from django.contrib import messages
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django.views.generic import View

from cordum.accounts.access import RoleRequiredMixin
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError, NotFound
from cordum.decisions import exports, selectors, storage
from cordum.decisions.audit import chain_verification_start
from cordum.decisions.choices import ExportFormat, ExportStatus
from cordum.decisions.filters import EvidenceFilterForm, parse_filters
from cordum.decisions.models import ChainHead, ChainVerification, ExportJob
from cordum.decisions.presenters import decision_chart_svg
from cordum.decisions.services import chain_hash, record_document


def _filters_or_empty(request):
    try:
        return parse_filters(request.GET), None
    except CordumError as exc:
        return {}, exc.message


@method_decorator([require_GET, vary_on_headers("HX-Request")], name="dispatch")
class ExplorerView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_OWN_TEAM

    def get(self, request):
        filters, error = _filters_or_empty(request)
        qs = selectors.evidence_list(membership=self.membership, filters=filters)
        try:
            page = selectors.evidence_page(qs=qs, cursor=request.GET.get("cursor"), size=50)
        except CordumError as exc:
            page, error = selectors.evidence_page(qs=qs, cursor=None, size=50), exc.message
        selectors.attach_linked_outcomes(membership=self.membership, records=page.records)
        query = request.GET.copy()
        query.pop("cursor", None)
        context = {
            "form": EvidenceFilterForm(request.GET or None), "page": page, "error": error,
            "query": query.urlencode(), "scope_teams": selectors.team_scope(self.membership),
        }
        if request.htmx and request.GET.get("cursor"):
            return render(request, "decisions/partials/_rows.html", context)
        total, capped = selectors.evidence_count(qs=qs)
        context.update(
            total=total, capped=capped, stream_limit=exports.STREAM_LIMIT,
            can_export=self.membership.has_perm(Perm.EXPORT_AUDIT),
            quarantined=(selectors.evidence_quarantine_list(organization_id=self.organization.pk).count()
                         if self.membership.has_perm(Perm.MANAGE_ORG) else 0),
            head=ChainHead.objects.filter(organization_id=self.organization.pk).first(),
        )
        template = "decisions/partials/_results.html" if request.htmx else "decisions/explorer.html"
        return render(request, template, context)


@method_decorator(require_GET, name="dispatch")
class ChartView(RoleRequiredMixin, View):
    """Decisions over time for the explorer's filters (SVG fragment; the explorer loads it after the rows)."""

    required_perm = Perm.VIEW_OWN_TEAM

    def get(self, request):
        filters, _error = _filters_or_empty(request)
        qs = selectors.evidence_list(membership=self.membership, filters=filters)
        counts = selectors.decision_counts(qs=qs, filters=filters)
        return render(request, "decisions/partials/_chart.html",
                      {"chart": decision_chart_svg(counts), "chart_window": counts["window"]})


@method_decorator(require_GET, name="dispatch")
class RecordView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_OWN_TEAM

    def get(self, request, pk):
        try:
            record = selectors.evidence_get(membership=self.membership, pk=pk)
        except NotFound:
            raise Http404("No such evidence record.") from None
        document = record_document({c: getattr(record, c) for c in storage.COLUMNS})
        link_ok = chain_hash(record.prev_hash, document) == record.hash
        linked = selectors.evidence_linked(membership=self.membership, record=record)
        # An outcome record carries no session id of its own: show (and link) its decision's.
        session_id = record.session_id or next((r.session_id for r in linked if r.session_id), "")
        return render(request, "decisions/record.html", {
            "record": record, "session_id": session_id,
            "data": {k: orjson.dumps(v).decode() if isinstance(v, list | dict) else v
                     for k, v in selectors.evidence_as_dict(record).items()},
            "linked": linked, "flow": selectors.evidence_flow(membership=self.membership, record=record),
            "chain": selectors.chain_neighbours(record=record), "link_ok": link_ok,
        })


@method_decorator(require_GET, name="dispatch")
class SessionView(RoleRequiredMixin, View):
    required_perm = Perm.VIEW_OWN_TEAM

    def get(self, request, session_id):
        timeline = selectors.session_timeline(membership=self.membership, session_id=session_id)
        if not timeline:
            raise Http404("No visible records for this session.")
        first, last = timeline[0]["record"], timeline[-1]["record"]
        # The session lasts until its last record, an outcome included (a call approved minutes later).
        last_at = max([last.timestamp, *(o.timestamp for step in timeline for o in step["outcomes"])])
        return render(request, "decisions/session.html", {
            "session_id": session_id, "timeline": timeline, "first": first, "last": last, "last_at": last_at,
            "duration_s": (last_at - first.timestamp).total_seconds(),
            "counts": {d: sum(1 for t in timeline if t["record"].decision == d)
                       for d in ("allow", "require_approval", "deny")},
        })


@method_decorator(require_GET, name="dispatch")
class ExportView(RoleRequiredMixin, View):
    """Streamed download of the filtered range (same filters and visibility as the explorer)."""

    required_perm = Perm.EXPORT_AUDIT

    def get(self, request):
        fmt = request.GET.get("format", ExportFormat.JSONL)
        if fmt not in ExportFormat.values:
            raise Http404("Unknown export format.")
        filters, error = _filters_or_empty(request)
        if error:
            messages.error(request, error)
            return redirect("decisions:explorer")
        qs = selectors.evidence_list(membership=self.membership, filters=filters)
        content_type = "text/csv" if fmt == ExportFormat.CSV else "application/x-ndjson"
        response = StreamingHttpResponse(exports.export_lines(qs, fmt), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{exports.export_filename(fmt)}"'
        response["X-Evidence-Count"] = str(qs.count())  # shown up front in the explorer too
        return response


@method_decorator(require_POST, name="dispatch")
class ExportJobCreateView(RoleRequiredMixin, View):
    required_perm = Perm.EXPORT_AUDIT

    def post(self, request):
        fmt = request.POST.get("format", ExportFormat.JSONL)
        if fmt not in ExportFormat.values:
            raise Http404("Unknown export format.")
        try:
            filters = parse_filters(request.POST)
        except CordumError as exc:
            messages.error(request, exc.message)
            return redirect("decisions:explorer")
        job = exports.export_job_create(membership=self.membership, filters=filters, fmt=fmt,
                                        scope=selectors.team_scope(self.membership))
        return redirect("decisions:export_job", pk=job.pk)


@method_decorator([require_GET, vary_on_headers("HX-Request")], name="dispatch")
class JobProgressView(RoleRequiredMixin, View):
    """A background job's page, or (htmx polls it) its progress fragment, which stops polling once finished."""

    model: type
    context_name = "job"
    template = partial = ""

    def finished(self, job) -> bool:
        raise NotImplementedError

    def get(self, request, pk):
        job = get_object_or_404(self.model, pk=pk, organization=self.organization)
        return render(request, self.partial if request.htmx else self.template,
                      {self.context_name: job, "finished": self.finished(job)})


class ExportJobView(JobProgressView):
    required_perm = Perm.EXPORT_AUDIT
    model = ExportJob
    template, partial = "decisions/export_job.html", "decisions/partials/_export_job.html"

    def finished(self, job) -> bool:
        return job.status in (ExportStatus.DONE, ExportStatus.FAILED)


@method_decorator(require_GET, name="dispatch")
class ExportJobDownloadView(RoleRequiredMixin, View):
    required_perm = Perm.EXPORT_AUDIT

    def get(self, request, pk):
        job = get_object_or_404(ExportJob, pk=pk, organization=self.organization, status=ExportStatus.DONE)
        return FileResponse(open(job.path, "rb"), as_attachment=True,  # noqa: SIM115 - FileResponse closes it
                            filename=f"evidence-export-{job.pk}.{job.format}")


@method_decorator(require_POST, name="dispatch")
class VerifyView(RoleRequiredMixin, View):
    """Auditors re-verify the whole chain from the explorer (same code as manage.py verify_audit)."""

    required_perm = Perm.VIEW_AUDIT

    def post(self, request):
        run = chain_verification_start(membership=self.membership)
        return redirect("decisions:verify_run", pk=run.pk)


class VerifyRunView(JobProgressView):
    """A verification's progress and its verdict."""

    required_perm = Perm.VIEW_AUDIT
    model = ChainVerification
    context_name = "run"
    template, partial = "decisions/verify_run.html", "decisions/partials/_verify_run.html"

    def finished(self, job) -> bool:
        return job.finished_at is not None


class QuarantineView(RoleRequiredMixin, View):
    """Admins: evidence batches the database refused, with their error, attempts and next automatic retry."""

    required_perm = Perm.MANAGE_ORG

    @method_decorator(require_GET)
    def get(self, request):
        batches = list(selectors.evidence_quarantine_list(organization_id=self.organization.pk))
        return render(request, "decisions/quarantine.html", {
            "batches": batches, "records": sum(b.record_count for b in batches)})

    @method_decorator(require_POST)
    def post(self, request):
        from cordum.decisions.services import evidence_quarantine_release

        batch_ids = None
        if request.POST.get("batch"):
            try:
                batch_ids = [int(request.POST["batch"])]
            except ValueError:
                messages.error(request, "batch: must be a batch number.")
                return redirect("decisions:quarantine")
        released = evidence_quarantine_release(organization_id=self.organization.pk, batch_ids=batch_ids,
                                               due_only=False)
        count = released.get(self.organization.pk, 0)
        messages.success(request, f"{count} batch(es) queued for another try." if count
                         else "Nothing to retry.")
        return redirect("decisions:quarantine")
