"""One filter set for the explorer, the export and the API: a plain form over the query string."""

import datetime as dt

from django import forms
from django.db.models import Q, QuerySet

from cordum.common.forms import FilterForm
from cordum.decisions.choices import DecisionValue, Outcome, RecordType

FILTER_FIELDS = (
    "start", "end", "agent", "team", "session", "decision", "rule", "policy_version", "outcome", "topic",
    "record_type", "q",
)


class EvidenceFilterForm(FilterForm):
    start = forms.DateTimeField(required=False, label="From (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    end = forms.DateTimeField(required=False, label="To (UTC)",
                              widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    agent = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "agent"}))
    team = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "team slug"}))
    session = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "session id or its start"}))
    decision = forms.ChoiceField(required=False, choices=[("", "any decision"), *DecisionValue.choices])
    rule = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "rule id"}))
    policy_version = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "policy version"}))
    outcome = forms.ChoiceField(required=False, choices=[("", "any outcome"), *Outcome.choices])
    topic = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "topic (prefix*)"}))
    record_type = forms.ChoiceField(required=False, choices=[("", "any record"), *RecordType.choices])
    q = forms.CharField(required=False, label="Target contains", widget=forms.TextInput(attrs={"placeholder": "target contains"}))


def parse_filters(data) -> dict:
    """Cleaned filters from a QueryDict/dict; invalid values raise CordumError naming the field."""
    from cordum.common.errors import CordumError

    form = EvidenceFilterForm({k: data.get(k) for k in FILTER_FIELDS if data.get(k) not in (None, "")})
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        raise CordumError(f"Invalid input: {field}: {errors[0]}", {"field": field})
    return {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}


def apply_filters(qs: QuerySet, filters: dict) -> QuerySet:
    f = filters
    if f.get("session"):
        qs = _in_session(qs, f["session"])
    if f.get("start"):
        qs = qs.filter(timestamp__gte=_aware(f["start"]))
    if f.get("end"):
        qs = qs.filter(timestamp__lt=_aware(f["end"]))
    exact = {"agent": "agent_name", "team": "team_slug", "decision": "decision",
             "rule": "rule", "policy_version": "policy_version", "outcome": "outcome", "record_type": "record_type"}
    for key, column in exact.items():
        if f.get(key):
            qs = qs.filter(**{column: f[key]})
    if f.get("topic"):
        topic = f["topic"]
        qs = qs.filter(topic__startswith=topic[:-1]) if topic.endswith("*") else qs.filter(topic=topic)
    if f.get("q"):
        qs = qs.filter(Q(target__icontains=f["q"]))
    return qs


def _in_session(qs: QuerySet, session_id: str) -> QuerySet:
    """The decisions of every session whose id starts with `session_id`, and their outcome records.

    A prefix is enough (ids are long; people copy the start). Outcome records carry no session id (the sidecar
    sends them later, linked by decision_id), so they are found through their decisions; the ids are fetched
    first so each side uses its own index.
    """
    decision_ids = list(
        qs.filter(session_id__startswith=session_id, record_type=RecordType.DECISION)
        .values_list("decision_id", flat=True)
    )
    return qs.filter(Q(session_id__startswith=session_id)
                     | Q(record_type=RecordType.OUTCOME, decision_id__in=decision_ids))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def filters_to_query(filters: dict) -> dict:
    """JSON-safe filters (for an ExportJob row and for links)."""
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in filters.items()}
