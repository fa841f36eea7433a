"""Writes for simulations: create (validates the candidate, enqueues) and run (the replay itself)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from cordum.common.errors import CordumError
from cordum.policies.models import PolicyVersion
from cordum.simulation import selectors
from cordum.simulation.choices import Baseline, CandidateSource, SimulationStatus
from cordum.simulation.models import Simulation

logger = logging.getLogger(__name__)

MAX_DAYS = 90
PROGRESS_EVERY_ROWS = 20_000
PROGRESS_EVERY_SECONDS = 0.5
CANDIDATE_FILENAME = "safety.yaml"


# --- candidates ------------------------------------------------------------------------------------
def _format_issues(issues: list[dict]) -> list[str]:
    return [f"{i.get('file') or CANDIDATE_FILENAME}:{i.get('line', 1)}:{i.get('col', 1)}: {i.get('message', '')}"
            for i in issues]


def policy_text_compile(*, text: str, version: str = "candidate (pasted)"):
    """Compile pasted/uploaded safety.yaml; CordumError listing file:line:col errors when invalid."""
    from cordum.policy import compile_policy, load_policy_text

    if not text or not text.strip():
        raise CordumError("Invalid input: policy_yaml: the candidate policy is empty.", {"field": "policy_yaml"})
    result = load_policy_text(text, filename=CANDIDATE_FILENAME)
    if result.errors or result.policy is None:
        errors = _format_issues([e.to_dict() for e in result.errors]) or [f"{CANDIDATE_FILENAME}:1:1: invalid policy"]
        raise CordumError(
            "The candidate policy is invalid:\n" + "\n".join(errors),
            {"field": "policy_yaml", "errors": errors},
        )
    return compile_policy(result.policy, version)


def policy_version_compile(*, version: PolicyVersion, field: str = "candidate_version_id"):
    from cordum.policy import compile_policy, policy_from_dict

    if not version.is_valid or not version.policy:
        errors = _format_issues(version.errors or []) or [f"{CANDIDATE_FILENAME}:1:1: invalid policy"]
        raise CordumError(
            f"Policy version {version.version} is invalid and cannot be simulated:\n" + "\n".join(errors),
            {"field": field, "errors": errors, "version": version.version},
        )
    return compile_policy(policy_from_dict(version.policy), version.version)


def _version_lookup(*, organization, version_id: int | None, commit: str | None) -> PolicyVersion:
    qs = PolicyVersion.objects.filter(repository__organization=organization).select_related("repository")
    if version_id is not None:
        version = qs.filter(pk=version_id).first()
        if version is None:
            raise CordumError(f"Invalid input: candidate_version_id: no policy version {version_id} in this "
                              "organisation.", {"field": "candidate_version_id"})
        return version
    commit = (commit or "").strip().lower()
    if len(commit) < 7:
        raise CordumError("Invalid input: candidate_commit: give at least 7 hex digits of the commit.",
                          {"field": "candidate_commit"})
    matches = list(qs.filter(commit_sha__startswith=commit)[:2])
    if not matches:
        raise CordumError(f"Invalid input: candidate_commit: no synced policy version for commit {commit}.",
                          {"field": "candidate_commit"})
    if len(matches) > 1:
        raise CordumError(f"Invalid input: candidate_commit: {commit} is ambiguous.", {"field": "candidate_commit"})
    return matches[0]


def live_version(*, organization) -> PolicyVersion | None:
    return (
        PolicyVersion.objects.filter(repository__organization=organization, is_live=True)
        .order_by("-committed_at", "-id").first()
    )


# --- create ----------------------------------------------------------------------------------------
def _check_scope(*, organization, team: str, agent: str) -> None:
    """A team or agent filter must name one of the organisation's: a typo would replay no call, and a CI gate
    (`fail_if_newly_denied_over`) would then pass without having looked at anything."""
    from cordum.accounts.models import Agent, Team

    if team and not Team.objects.filter(organization=organization, slug=team).exists():
        raise CordumError(f"Invalid input: team: no team {team!r} in this organisation.", {"field": "team"})
    if agent and not Agent.objects.filter(organization=organization, name=agent).exists():
        raise CordumError(f"Invalid input: agent: no agent {agent!r} in this organisation.", {"field": "agent"})


def simulation_create(
    *,
    organization,
    user,
    candidate_version_id: int | None = None,
    candidate_commit: str | None = None,
    policy_yaml: str | None = None,
    days: int = 7,
    team: str = "",
    agent: str = "",
    environment: str = "",
    baseline: str = Baseline.RECORDED,
    fail_if_newly_denied_over: int | None = None,
    enqueue: bool = True,
) -> Simulation:
    """Validate the candidate (refused with its file:line:col errors when invalid), save, enqueue the run."""
    given = [x for x in (candidate_version_id, candidate_commit, policy_yaml) if x not in (None, "")]
    if len(given) != 1:
        raise CordumError("Invalid input: candidate: give exactly one of candidate_version_id, candidate_commit "
                          "or policy_yaml.", {"field": "candidate"})
    if not 1 <= int(days) <= MAX_DAYS:
        raise CordumError(f"Invalid input: days: must be between 1 and {MAX_DAYS}.", {"field": "days"})
    if baseline not in Baseline.values:
        raise CordumError(f"Invalid input: baseline: one of {', '.join(Baseline.values)}.", {"field": "baseline"})
    _check_scope(organization=organization, team=team, agent=agent)
    version = None
    if policy_yaml not in (None, ""):
        policy_text_compile(text=policy_yaml)
        source, label, text = CandidateSource.TEXT, "pasted safety.yaml", policy_yaml
    else:
        version = _version_lookup(organization=organization, version_id=candidate_version_id, commit=candidate_commit)
        policy_version_compile(version=version, field="candidate_commit" if candidate_commit else "candidate_version_id")
        source, label, text = CandidateSource.VERSION, version.version, ""
    live = live_version(organization=organization)
    if baseline == Baseline.LIVE and live is None:
        raise CordumError("Invalid input: baseline: there is no live policy version to compare with.",
                          {"field": "baseline"})
    now = timezone.now()
    from cordum.accounts.selectors import membership_for

    membership = membership_for(user=user, organization_id=organization.pk) if getattr(user, "pk", None) else None
    simulation = Simulation.objects.create(
        organization=organization,
        created_by=user if getattr(user, "pk", None) else None,
        team_scope=membership.team_scope() if membership is not None else None,
        candidate_source=source,
        candidate_version=version,
        candidate_text=text,
        candidate_label=label,
        baseline_version=live,
        baseline=baseline,
        days=int(days),
        window_start=now - dt.timedelta(days=int(days)),
        window_end=now,
        team=team or "",
        agent=agent or "",
        environment=environment or "",
        fail_if_newly_denied_over=fail_if_newly_denied_over,
    )
    if enqueue:
        from cordum.simulation.tasks import simulation_run_task

        transaction.on_commit(lambda: simulation_run_task.delay(simulation.pk))
    return simulation


# --- run -------------------------------------------------------------------------------------------
def _candidate_for(simulation: Simulation):
    if simulation.candidate_source == CandidateSource.TEXT:
        return policy_text_compile(text=simulation.candidate_text)
    if simulation.candidate_version is None:
        raise CordumError("The candidate policy version no longer exists.")
    return policy_version_compile(version=simulation.candidate_version)


def _baseline_for(simulation: Simulation):
    if simulation.baseline != Baseline.LIVE:
        return None
    if simulation.baseline_version is None:
        raise CordumError("The live policy version no longer exists.")
    return policy_version_compile(version=simulation.baseline_version, field="baseline")


def simulation_channel(pk: int) -> str:
    """notify channel published on every progress update and when the run finishes (for long-polls)."""
    return f"simulation:{pk}"


def _publish(pk: int) -> None:
    from cordum.common.notify import publish

    try:
        publish(simulation_channel(pk))
    except Exception:  # a missing wake-up only delays a long-poll; never fail the run for it
        logger.warning("could not publish progress of simulation %s", pk, exc_info=True)


def _reference_for(simulation: Simulation):
    """With recorded decisions as "before", the live version tells drift apart from the candidate's changes."""
    if simulation.baseline != Baseline.RECORDED or simulation.baseline_version is None:
        return None
    if not simulation.baseline_version.is_valid:
        return None
    return policy_version_compile(version=simulation.baseline_version, field="baseline")


class _Progress:
    def __init__(self, simulation: Simulation, total: int) -> None:
        self.pk, self.total, self.done = simulation.pk, total, 0
        self._last_rows, self._last_time = 0, time.monotonic()

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.done - self._last_rows >= PROGRESS_EVERY_ROWS or (
            time.monotonic() - self._last_time >= PROGRESS_EVERY_SECONDS and self.done > self._last_rows
        ):
            self.flush()

    def flush(self) -> None:
        self._last_rows, self._last_time = self.done, time.monotonic()
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        Simulation.objects.filter(pk=self.pk).update(progress=fraction, rows_processed=self.done)
        _publish(self.pk)


def _batches(rows, size: int):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


SIGNATURE_LENGTH = 7  # policy.simulate.Signature: the first columns of every grouped row


def _signature_groups(replay, window, rows=None, id_index: int = SIGNATURE_LENGTH + 3):
    """Stream the grouped rows in batches; evaluate each new signature once, fetching its args by id
    (rows: the grouped rows by default, or any rows starting with the signature, the record id at id_index)."""
    if rows is None:
        rows = selectors.evidence_signature_groups(window=window)
    for batch in _batches(rows, selectors.FETCH_SIZE):
        missing = {}
        for row in batch:
            sig = row[:SIGNATURE_LENGTH]
            if sig not in replay.evaluated and sig not in missing:
                missing[sig] = row[id_index]
        args = selectors.evidence_args(organization_id=window.organization_id, ids=list(missing.values()))
        for sig, record_id in missing.items():
            replay.evaluations_for(sig, args.get(record_id) or "")
        yield from batch


def simulation_replay(*, simulation: Simulation, candidate: Any, baseline: Any = None, reference: Any = None,
                      progress: _Progress | None = None, prefilter: bool = True) -> dict:
    """Replay the window's recorded calls (grouped, or in session order when limits apply); the report.

    With limits, only the sessions a limit could touch are replayed call by call (prefilter=False: all)."""
    from cordum.policy.simulate import BUSY_PERIOD, Replay

    replay = Replay(candidate, baseline=baseline, reference=reference)
    window = selectors.Window.of(simulation)
    started = time.monotonic()
    replayed_calls = 0
    if replay.needs_call_order:
        # Pass 1: evaluate every distinct signature once (grouped in SQL).
        by_hash: dict = {}
        for row in _signature_groups(replay, window, selectors.evidence_signatures(window=window),
                                     id_index=SIGNATURE_LENGTH):
            by_hash.setdefault(row[SIGNATURE_LENGTH + 1], set()).add(row[:SIGNATURE_LENGTH])
        # Hashes are PostgreSQL's (None on SQLite) and must not collide; an empty window has none to go by.
        hashed = bool(by_hash) and None not in by_hash and all(len(sigs) == 1 for sigs in by_hash.values())
        signature = {h: next(iter(sigs)) for h, sigs in by_hash.items()} if hashed else None
        replayed, expected = None, 0  # session hashes to replay call by call (None: all of them), their calls
        if hashed and prefilter:
            # Pass 2: per-session aggregates; the engine says which sessions a limit (or a session data-flow
            # label) could touch. Pass 3: the others' calls, grouped and folded without the tracker.
            writes = sorted({sig[2] for sig in signature.values() if replay.counts_as_write(sig)})
            labelling = sorted({sig[2] for sig in signature.values() if replay.may_set_labels(sig)})
            replayed, expected = [], 0
            for session, calls, n_writes, busiest, duration, n_labelling in selectors.evidence_session_stats(
                window=window, write_digests=writes or None, label_digests=labelling or None
            ):
                if replay.session_may_be_limited(calls=calls, duration=duration, writes=n_writes,
                                                 busiest=(busiest, BUSY_PERIOD), labelling=n_labelling):
                    replayed.append(session)
                    expected += calls
            for h, decision, day, count, first, last in selectors.evidence_unlimited_groups(
                window=window, replayed_sessions=replayed
            ):
                replay.add_unlimited(sig=signature[h], recorded=decision, day=day, count=count, first=first,
                                     last=last)
                if progress:
                    progress.advance(count)
        # Pass 4: the remaining calls in (session, time) order through the limits tracker.
        rows = () if replayed == [] else selectors.evidence_calls_in_session_order(
            window=window, hashed=hashed, sessions=replayed, expected_rows=expected if replayed else None)
        for batch in _batches(rows, 5 * selectors.FETCH_SIZE):
            if hashed:
                batch = [(session, ts, seq, decision, signature[h]) for session, ts, seq, decision, h in batch]
            replayed_calls += replay.add_calls(batch)
            if progress:
                progress.advance(len(batch))
    else:
        for row in _signature_groups(replay, window):
            decision, day, count, _id, first, last, _hash = row[SIGNATURE_LENGTH:]
            replay.add(sig=row[:SIGNATURE_LENGTH], args=None, recorded=decision, day=day,
                       count=count, samples=(first, last) if first != last else (first,))
            if progress:
                progress.advance(count)
    report = replay.report(resolve=lambda seqs: selectors.evidence_decision_ids(
        organization_id=simulation.organization_id, seqs=seqs))
    report["run"] = {"seconds": round(time.monotonic() - started, 3), "evaluations": replay.evaluations,
                     "grouped": not replay.needs_call_order, "calls_replayed_in_order": replayed_calls}
    return report


def simulation_run(*, simulation: Simulation) -> Simulation:
    """Run a queued simulation to completion (or failure). Safe to call twice: a finished one is left as is."""
    claimed = Simulation.objects.filter(
        pk=simulation.pk, status__in=[SimulationStatus.QUEUED, SimulationStatus.RUNNING]
    ).update(status=SimulationStatus.RUNNING, started_at=timezone.now(), progress=0.0, rows_processed=0)
    if not claimed:
        simulation.refresh_from_db()
        return simulation
    try:
        candidate = _candidate_for(simulation)
        baseline = _baseline_for(simulation)
        reference = _reference_for(simulation)
        total = selectors.evidence_window_count(window=selectors.Window.of(simulation))
        Simulation.objects.filter(pk=simulation.pk).update(rows_total=total)
        progress = _Progress(simulation, total)
        report = simulation_replay(simulation=simulation, candidate=candidate, baseline=baseline,
                                   reference=reference, progress=progress)
        report["window"] = {"start": simulation.window_start.isoformat(), "end": simulation.window_end.isoformat(),
                            "days": simulation.days}
        report["filters"] = {"team": simulation.team, "agent": simulation.agent,
                             "environment": simulation.environment}
        Simulation.objects.filter(pk=simulation.pk).update(
            status=SimulationStatus.COMPLETED, progress=1.0, rows_processed=report["summary"]["total_calls"],
            rows_total=max(total, report["summary"]["total_calls"]), report=report, error="",
            finished_at=timezone.now(),
        )
    except CordumError as exc:
        Simulation.objects.filter(pk=simulation.pk).update(
            status=SimulationStatus.FAILED, error=exc.message, finished_at=timezone.now()
        )
    except Exception as exc:
        logger.exception("simulation %s failed", simulation.pk)
        Simulation.objects.filter(pk=simulation.pk).update(
            status=SimulationStatus.FAILED, error=f"internal error: {exc.__class__.__name__}: {exc}",
            finished_at=timezone.now(),
        )
    _publish(simulation.pk)
    simulation.refresh_from_db()
    return simulation
