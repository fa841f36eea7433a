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
from cordum.policy.simulate import record_input
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
    cache_key: str = "",
    evidence_watermark: int | None = None,
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
        cache_key=cache_key,
        evidence_watermark=evidence_watermark,
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
    _publish_channel(simulation_channel(pk))


def _publish_channel(channel: str) -> None:
    from cordum.common.notify import publish

    try:
        publish(channel)
    except Exception:  # a missing wake-up only delays a long-poll; never fail the run for it
        logger.warning("could not publish on %s", channel, exc_info=True)


def _reference_for(simulation: Simulation):
    """With recorded decisions as "before", the live version tells drift apart from the candidate's changes."""
    if simulation.baseline != Baseline.RECORDED or simulation.baseline_version is None:
        return None
    if not simulation.baseline_version.is_valid:
        return None
    return policy_version_compile(version=simulation.baseline_version, field="baseline")


class _Progress:
    def __init__(self, simulation: Simulation, total: int, on_progress=None) -> None:
        self.pk, self.total, self.done = simulation.pk, total, 0
        self._last_rows, self._last_time = 0, time.monotonic()
        self.on_progress = on_progress  # (done, message, total=) as cordum.common.progress.TerminalProgress takes

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
        if self.on_progress is not None:
            self.on_progress(self.done, "replaying", total=self.total)


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
            recorded_args, facts = args.get(record_id) or ("", "")
            replay.evaluations_for(sig, lambda a=recorded_args, f=facts: record_input({"args": a, "facts": f}))
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


def simulation_run(*, simulation: Simulation, on_progress=None) -> Simulation:
    """Run a queued simulation to completion (or failure). Safe to call twice: a finished one is left as is.
    `on_progress(done, message, total=)` is told as calls are replayed (`manage.py simulate_changes` prints it)."""
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
        progress = _Progress(simulation, total, on_progress)
        if on_progress is not None:
            on_progress(0, "replaying", total=total)
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


# --- policy changes: every branch and pull/merge request head, simulated once per content -----------------
CHANGE_WINDOW_DAYS = 7


def change_cache_key(*, organization_id: int, candidate_sha256: str, baseline_sha256: str, days: int,
                     watermark: int) -> str:
    """What a change simulation's result depends on: the candidate's and the baseline's content, the window's
    length, how far the evidence went when it ran, and its scope (every team's calls)."""
    import hashlib
    import json

    material = {"org": organization_id, "candidate": candidate_sha256, "baseline": baseline_sha256 or "recorded",
                "days": days, "watermark": watermark, "scope": "all-teams"}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _change_simulation(*, organization, version: PolicyVersion, live: PolicyVersion | None,
                       watermark: int) -> Simulation:
    """The simulation of `version` for this cache key: the existing one (a re-push of the same content costs
    nothing; a failed run is queued again), else a new one enqueued after commit."""
    from django.db import IntegrityError

    from cordum.simulation.tasks import simulation_run_task

    key = change_cache_key(organization_id=organization.pk, candidate_sha256=version.content_sha256,
                           baseline_sha256=live.content_sha256 if live else "", days=CHANGE_WINDOW_DAYS,
                           watermark=watermark)
    existing = Simulation.objects.filter(organization=organization, cache_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                return simulation_create(
                    organization=organization, user=None, candidate_version_id=version.pk, days=CHANGE_WINDOW_DAYS,
                    baseline=Baseline.LIVE if live is not None else Baseline.RECORDED, cache_key=key,
                    evidence_watermark=watermark,
                )
        except IntegrityError:  # another refresh created it a moment ago
            existing = Simulation.objects.get(organization=organization, cache_key=key)
    if existing.status == SimulationStatus.FAILED:
        Simulation.objects.filter(pk=existing.pk).update(status=SimulationStatus.QUEUED, error="", progress=0.0)
        pk = existing.pk
        transaction.on_commit(lambda: simulation_run_task.delay(pk))
        existing.refresh_from_db()
    return existing


def _still_answers(simulation: Simulation | None, *, version: PolicyVersion, live: PolicyVersion | None) -> bool:
    """A head's simulation stands while its policy content and the live one are unchanged (a poll, or a push
    that left safety.yaml alone, runs nothing new even after more evidence arrived)."""
    if simulation is None or simulation.status == SimulationStatus.FAILED or not simulation.cache_key:
        return False
    candidate, baseline = simulation.candidate_version, simulation.baseline_version
    return (candidate is not None and candidate.content_sha256 == version.content_sha256
            and (baseline.content_sha256 if baseline else "") == (live.content_sha256 if live else ""))


def policy_changes_refresh(*, repository) -> list:
    """After a sync: one PolicyChange per branch and pull/merge request head (the live branch aside), each valid
    head whose policy differs from the live one simulated over the last CHANGE_WINDOW_DAYS days of recorded
    calls (cached; see change_cache_key). Heads that no longer exist are forgotten."""
    from cordum.policies import selectors as policy_selectors
    from cordum.simulation.models import PolicyChange

    organization = repository.organization
    live = policy_selectors.live_version(repository=repository)
    gates_text, gates_commit = policy_selectors.repository_gates_text(repository=repository)
    watermark = selectors.evidence_watermark(organization_id=organization.pk)
    before = {c.ref: c for c in PolicyChange.objects.filter(repository=repository).select_related(
        "version", "simulation__candidate_version", "simulation__baseline_version")}
    changes, to_post = [], []
    heads = policy_selectors.repository_change_heads(
        repository=repository, known={ref: (c.head_sha, c.version) for ref, c in before.items()})
    for row in heads:
        version, previous = row["version"], before.get(row["ref"])
        simulation = None
        if version is not None and version.is_valid and (live is None or version.content_sha256 != live.content_sha256):
            simulation = previous.simulation if previous is not None else None
            if not _still_answers(simulation, version=version, live=live):
                simulation = _change_simulation(organization=organization, version=version, live=live,
                                                watermark=watermark)
        change, _ = PolicyChange.objects.update_or_create(
            repository=repository, ref=row["ref"],
            defaults={"head_sha": row["head"], "version": version, "simulation": simulation,
                      "gates_text": gates_text, "gates_commit": gates_commit, "updated_at": timezone.now()},
        )
        changes.append(change)
        if previous is None or previous.forge_error or not previous.forge_posted or (
                previous.head_sha, previous.simulation_id, previous.gates_commit) != (
                change.head_sha, change.simulation_id, change.gates_commit):
            to_post.append(change.pk)
    PolicyChange.objects.filter(repository=repository).exclude(ref__in=[row["ref"] for row in heads]).delete()
    if repository.forge_repository and to_post:
        policy_changes_post_enqueue(change_ids=to_post)
    repository_id = repository.pk
    transaction.on_commit(lambda: _publish_channel(change_channel(repository_id)))
    return changes


def change_channel(repository_id: int) -> str:
    """notify channel published when a repository's changes were refreshed (each simulation then publishes on
    its own simulation_channel as it advances)."""
    return f"policy-changes:{repository_id}"


# --- posting a change's result back to the forge ---------------------------------------------------------
def _pull_request_number(ref: str) -> int | None:
    import re

    match = re.fullmatch(r"pull/(\d+)/head", ref)
    return int(match.group(1)) if match else None


def change_url(change) -> str:
    from django.conf import settings
    from django.urls import reverse

    path = reverse("simulation:change", kwargs={"repo_pk": change.repository_id, "ref": change.ref})
    return settings.CORDUM_PUBLIC_URL.rstrip("/") + path


def _gates_line(gates: dict) -> str:
    if gates["errors"]:
        return "gates unreadable (fail)"
    if gates["passed"] is None:
        return "no gates"
    failed = [v["gate"] for v in gates["verdicts"] if not v["passed"]]
    return "gates pass" if not failed else "gates fail: " + ", ".join(failed)


def policy_change_outcome(*, change) -> dict | None:
    """What to post for a change: {"state": pending|success|failure|error, "description", "body"}; None when its
    head has no policy version yet. Figures only (no example calls): a pull request's readers are not scoped."""
    version, simulation = change.version, change.simulation
    if version is None:
        return None
    if not version.is_valid:
        first = (version.errors or [{}])[0]
        where = f"{first.get('file', '')}:{first.get('line', 1)}:{first.get('col', 1)}"
        description = f"invalid policy: {where}: {first.get('message', '')}"
        return {"state": "failure", "description": description,
                "body": f"### Cordum: `{change.ref}` — invalid policy\n\n" + "\n".join(
                    f"- `{e.get('file')}:{e.get('line')}:{e.get('col')}`: {e.get('message')}" for e in version.errors)}
    if simulation is None:
        return {"state": "success", "description": "same policy as the live version", "body": ""}
    if not simulation.is_finished:
        return {"state": "pending", "description": f"simulating over the last {simulation.days} days "
                                                    f"({simulation.percent}%)", "body": ""}
    if simulation.status == SimulationStatus.FAILED:
        return {"state": "error", "description": f"simulation failed: {simulation.error}"[:140], "body": ""}
    return _completed_outcome(change=change, simulation=simulation)


def _completed_outcome(*, change, simulation) -> dict:
    summary, load = simulation.report["summary"], simulation.report["approval_load"]
    gates = selectors.policy_change_gates(change=change)
    state = "failure" if gates["passed"] is False else "success"
    description = (f"{summary['changed_calls']} of {summary['total_calls']} calls change "
                   f"({summary['newly_denied']} newly denied, {summary['newly_require_approval']} newly need "
                   f"approval); {_gates_line(gates)}")
    verdict = {True: "✅ gates pass", False: "❌ gates fail", None: "no gates"}[gates["passed"]]
    lines = [
        f"### Cordum: policy change `{change.ref}` — {verdict}", "",
        f"Head `{change.head_sha[:7]}` against the live version "
        f"`{simulation.baseline_version.version if simulation.baseline_version else 'recorded decisions'}`: "
        f"{summary['total_calls']} recorded calls of the last {simulation.days} days replayed.", "",
        "| | calls |", "|---|---:|",
        f"| change decision | {summary['changed_calls']} |",
        f"| newly denied | {summary['newly_denied']} |",
        f"| newly need approval | {summary['newly_require_approval']} |",
        f"| newly allowed | {summary['newly_allowed']} |", "",
        f"Approvals per day: {load['avg_per_day_before']} → {load['avg_per_day_after']}.",
    ]
    dead = simulation.report["rules"]["dead"]
    if dead:
        lines.append("Rules that never match a recorded call: " + ", ".join(f"`{r}`" for r in dead) + ".")
    if gates["verdicts"] or gates["errors"]:
        lines += ["", f"Gates ({gates['source']}):", "", "| gate | limit | result | |", "|---|---|---|---|"]
        lines += [f"| `{v['gate']}` | {v['limit']} | {v['detail']} | {'pass' if v['passed'] else '**fail**'} |"
                  for v in gates["verdicts"]]
        lines += [f"| unreadable | | `{e['file']}:{e['line']}:{e['col']}`: {e['message']} | **fail** |"
                  for e in gates["errors"]]
    lines += ["", f"[Diff, simulation and example calls in Cordum]({change_url(change)})"]
    return {"state": state, "description": description, "body": "\n".join(lines)}


def policy_change_post(*, change) -> str:
    """Post a change's result to its forge: the commit status of its head and, for a pull request, the one summary
    comment (created once, then updated in place). The same result is never posted twice. Returns what was done;
    raises forge.ForgeError (recorded on the change) when the forge refuses or cannot be reached."""
    from cordum.simulation.forge import ForgeError, GitHubForge
    from cordum.simulation.models import PolicyChange

    forge = GitHubForge.for_repository(change.repository)
    if forge is None:
        return "not configured"
    try:
        with transaction.atomic():  # one poster per change at a time: two workers never write two comments
            locked = PolicyChange.objects.select_for_update().get(pk=change.pk)
            change.forge_posted, change.forge_comment_id = locked.forge_posted, locked.forge_comment_id
            return _post(change=change, forge=forge)
    except ForgeError as exc:
        PolicyChange.objects.filter(pk=change.pk).update(forge_error=str(exc))
        raise


def _post(*, change, forge) -> str:
    from cordum.simulation.models import PolicyChange

    outcome = policy_change_outcome(change=change)
    if outcome is None:
        return "nothing to post"
    posted = f"{change.head_sha}:{outcome['state']}:{change.simulation_id or ''}"
    if change.forge_posted == posted:
        return "unchanged"
    forge.set_status(sha=change.head_sha, state=outcome["state"], description=outcome["description"],
                     target_url=change_url(change))
    comment_id = change.forge_comment_id
    number = _pull_request_number(change.ref)
    if number is not None and outcome["body"]:
        comment_id = forge.upsert_comment(issue_number=number, body=outcome["body"], comment_id=comment_id)
    PolicyChange.objects.filter(pk=change.pk).update(forge_posted=posted, forge_comment_id=comment_id,
                                                     forge_error="")
    return outcome["state"]


def policy_changes_post_enqueue(*, change_ids: list[int]) -> None:
    """Post these changes' results after the current transaction commits (each a task that retries)."""
    from cordum.simulation.tasks import policy_change_post_task

    for pk in change_ids:
        transaction.on_commit(lambda pk=pk: policy_change_post_task.delay(pk))
