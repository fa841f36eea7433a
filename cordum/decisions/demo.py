"""Demo evidence: a synthetic but realistic week of governed tool calls across the demo agents and teams.

Every call is decided by the real policy engine (`cordum.policy`) with the policy version that was live at
the time (the demo repository's valid versions, else the template `safety.yaml`), redacted and digested the
way the sidecar does it, and ingested through this app's own pipeline (`evidence_batch_enqueue`: staging
row + Celery task; eager in the embedded demo). Deterministic ids make it idempotent: a second run
stores nothing new (and returns early when the week is already there).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from cordum.decisions import services
from cordum.decisions.models import ChainHead, EvidenceRecord

SEED = 20261125
DAYS = 7
NAMESPACE = uuid.UUID("6f1c2d8e-3b7a-4c55-9d1e-0a2b3c4d5e6f")
REVIEWERS = ["alice@example.com", "admin@example.com"]
REPOS = {"payments": "/src/payments-api", "platform": "/src/platform-infra", "web": "/src/web-app"}
FILES = {
    "payments": ["src/ledger.py", "src/charges/service.py", "src/charges/stripe_client.py", "tests/test_ledger.py",
                 "migrations/0042_refunds.py", "README.md", "pyproject.toml"],
    "platform": ["terraform/main.tf", "terraform/rds.tf", "helm/values.yaml", "k8s/deploy.yaml", "Makefile",
                 "scripts/rotate_keys.sh"],
    "web": ["src/App.tsx", "src/components/Checkout.tsx", "src/api/client.ts", "package.json", "vite.config.ts",
            "src/styles/theme.css"],
}


@dataclass
class Step:
    server: str
    tool: str
    arguments: dict
    weight: float


def _scenarios(team: str) -> list[Step]:
    """What a coding agent does in a session, weighted: mostly reads and edits, some shell, few risky calls."""
    # Paths relative to the agent's working root (what coding agents mostly send); the synthetic records carry
    # no root, so a replay resolves them exactly as the engine did when generating them.
    root = "."
    files = FILES[team]
    f = files[0]
    steps = [
        Step("claude-code", "Read", {"file_path": f}, 26),
        Step("claude-code", "Grep", {"pattern": "def charge", "path": root}, 10),
        Step("claude-code", "Edit", {"file_path": f, "old_string": "x", "new_string": "y"}, 14),
        Step("claude-code", "Write", {"file_path": f, "content": "..."}, 3),
        Step("git", "git_status", {"repo_path": root}, 8),
        Step("git", "git_diff_unstaged", {"repo_path": root}, 6),
        Step("git", "git_log", {"repo_path": root, "max_count": 10}, 3),
        Step("git", "git_add", {"repo_path": root, "files": [f]}, 3),
        Step("git", "git_commit", {"repo_path": root, "message": "Fix rounding in refunds"}, 2.5),
        Step("filesystem", "read_text_file", {"path": f}, 8),
        Step("filesystem", "list_directory", {"path": root}, 3),
        # session data-flow: the template denies a web fetch (or push) later in a session that read Terraform state
        Step("claude-code", "WebFetch", {"url": "https://registry.terraform.io/providers/hashicorp/aws/latest/docs"},
             1.2),
        Step("claude-code", "Bash", {"command": "pytest -q" if team != "web" else "npm test"}, 7),
        Step("claude-code", "Bash", {"command": "git push origin HEAD"}, 1.4),
        Step("claude-code", "Bash", {"command": "npm install left-pad" if team == "web" else "pip install requests"}, 0.8),
        Step("claude-code", "Bash", {"command": "cat .env"}, 0.35),
        *([Step("claude-code", "Bash", {"command": "npm publish --access public"}, 0.1)] if team == "web" else []),
        Step("filesystem", "read_text_file", {"path": ".env"}, 0.3),
        Step("claude-code", "Bash", {"command": "rm -rf build/ dist/"}, 0.5),
        Step("claude-code", "Write", {"file_path": "/etc/hosts", "content": "127.0.0.1 api"}, 0.15),
    ]
    if team == "platform":
        steps += [
            Step("claude-code", "Bash", {"command": "terraform plan"}, 3),
            Step("filesystem", "read_text_file", {"path": "terraform/terraform.tfstate"}, 0.8),
            Step("claude-code", "Bash", {"command": "terraform destroy -target=aws_db_instance.staging"}, 0.25),
            Step("claude-code", "Bash", {"command": "kubectl delete pod api-7d9f -n staging"}, 0.4),
            Step("claude-code", "Bash", {"command": "git push --force origin main"}, 0.1),
        ]
    return steps


def _policies(ctx: dict):
    """[(valid_from, compiled)] oldest first: the demo repository's valid versions, or the template."""
    from cordum.policy import compile_policy, load_policy_file, policy_from_dict

    out = []
    repository = ctx.get("policy_repository")
    if repository is not None:
        for version in repository.versions.filter(is_valid=True).exclude(policy=None).order_by("committed_at"):
            if version.branches and "main" not in version.branches:
                continue
            out.append((version.committed_at, compile_policy(policy_from_dict(version.policy), version.version)))
    if not out:
        result = load_policy_file(Path(settings.BASE_DIR) / "policies_repo_template" / "safety.yaml")
        out.append((dt.datetime(2000, 1, 1, tzinfo=dt.UTC), compile_policy(result.policy, "v1.0.0@template")))
    return out


def _policy_at(policies, when):
    current = policies[0][1]
    for valid_from, compiled in policies:
        if valid_from <= when:
            current = compiled
    return current


def generate(ctx: dict, *, now: dt.datetime | None = None, sessions_per_agent_day: float = 18.0) -> dict[str, list[dict]]:
    """Records per agent name (upload format), time-ordered. Deterministic for a given `now` (day)."""
    from cordum.policy import (
        Call,
        LimitsTracker,
        args_digest,
        evaluate,
        label_origin,
        redact_arguments,
        redact_target,
    )
    from cordum.policy.flows import flow_facts

    rng = random.Random(SEED)
    now = (now or dt.datetime.now(dt.UTC)).replace(minute=0, second=0, microsecond=0)
    start = now - dt.timedelta(days=DAYS)
    policies = _policies(ctx)
    # The policy's session limits, as a sidecar applies them: one tracker per policy version (a sidecar starts
    # counting afresh when a new version arrives), fed each call at its recorded (millisecond) time.
    trackers: dict[str, LimitsTracker] = {}
    agents = sorted(ctx["agents"].values(), key=lambda a: a.name)
    per_agent: dict[str, list[dict]] = {}
    for agent in agents:
        team = agent.team.slug if agent.team else "payments"
        steps = _scenarios(team)
        weights = [s.weight for s in steps]
        records = per_agent.setdefault(agent.name, [])
        nightly = agent.name.endswith("-ci")
        for day in range(DAYS):
            day_start = start + dt.timedelta(days=day)
            weekend = day_start.weekday() >= 5
            n_sessions = max(1, int(rng.gauss(sessions_per_agent_day * (0.3 if weekend else 1.0), 1.5)))
            for s in range(n_sessions):
                hour = rng.uniform(0, 24) if nightly else min(max(rng.gauss(14, 2.5), 7), 21)
                t = day_start + dt.timedelta(hours=hour)
                session_id = f"sess_{uuid.uuid5(NAMESPACE, f'{agent.name}:{day}:{s}').hex[:16]}"
                held: dict[str, dict] = {}  # session data-flow labels, set by calls that ran (as the sidecar does)
                for i in range(max(5, int(rng.lognormvariate(3.6, 0.6)))):
                    t += dt.timedelta(seconds=rng.expovariate(1 / 9.0) + 0.4)
                    if t >= now:
                        break
                    step = rng.choices(steps, weights)[0]
                    arguments = dict(step.arguments)
                    if "file_path" in arguments and not arguments["file_path"].startswith("/etc"):
                        arguments["file_path"] = rng.choice(FILES[team])
                    compiled = _policy_at(policies, t)
                    call = Call(server=step.server, tool=step.tool, arguments=arguments, agent=agent.name, team=team,
                                environment=agent.environment, root=REPOS[team])
                    decision = evaluate(compiled, call, held or None)
                    tracker = trackers.setdefault(compiled.version, LimitsTracker(compiled))
                    recorded_at = t.replace(microsecond=t.microsecond // 1000 * 1000)
                    decision = tracker.check(session_id, decision, recorded_at.timestamp()) or decision
                    decision_id = str(uuid.uuid5(NAMESPACE, f"{session_id}:{i}"))
                    record = {
                        "record_type": "decision", "decision_id": decision_id, "agent": agent.name,
                        "session_id": session_id, "team": team, "environment": agent.environment,
                        "action": decision.action, "target": redact_target(compiled, decision.target, arguments),
                        "server": step.server,
                        "tool": step.tool, "args_digest": args_digest(arguments),
                        "args": redact_arguments(compiled, call), "topic": decision.topic,
                        "risk_tags": list(decision.risk_tags), "decision": decision.decision, "rule": decision.rule,
                        "reason": decision.reason, "policy_version": decision.policy_version, "mode": "enforce",
                        "shadow": [dict(x) for x in decision.shadow], "reviewer": None, "outcome": None,
                        "timestamp": _ts(t), "latency_us": int(rng.lognormvariate(3.4, 0.5)),
                        "sidecar_id": f"sc-{agent.name}",
                    }
                    facts = flow_facts(decision.flow if decision.flow and decision.flow["rule"] == decision.rule
                                       else None, decision.labels if decision.decision != "deny" else ())
                    if facts:
                        record["facts"] = facts
                    records.append(record)
                    origin = label_origin(decision_id=decision_id, server=step.server, tool=step.tool,
                                          target=record["target"], timestamp=record["timestamp"])
                    if decision.decision == "allow":
                        for label in decision.labels:
                            held.setdefault(label, origin)
                        failed = rng.random() < 0.04
                        record["outcome"] = "failed" if failed else "executed"
                        t += dt.timedelta(milliseconds=rng.randint(20, 4000))
                    elif decision.decision == "deny":
                        record["outcome"] = "blocked"
                    else:
                        wait = dt.timedelta(seconds=rng.lognormvariate(4.0, 0.9))
                        roll = rng.random()
                        verdict = "approved" if roll < 0.78 else ("denied" if roll < 0.93 else "timed_out")
                        if verdict == "timed_out":
                            wait = dt.timedelta(minutes=15)
                        t += wait
                        reviewer = None if verdict == "timed_out" else rng.choice(REVIEWERS)
                        comment = {"approved": rng.choice(["ok", "LGTM", "fine for staging", ""]),
                                   "denied": rng.choice(["not on main, open a PR", "no new deps this week"]),
                                   "timed_out": ""}[verdict]
                        records.append({"record_type": "outcome", "decision_id": decision_id, "outcome": verdict,
                                        "reviewer": reviewer, "comment": comment, "error": "", "timestamp": _ts(t),
                                        "duration_ms": int(wait.total_seconds() * 1000)})
                        if verdict == "approved":
                            for label in decision.labels:
                                held.setdefault(label, origin)
                            run = dt.timedelta(milliseconds=rng.randint(300, 9000))
                            t += run
                            records.append({"record_type": "outcome", "decision_id": decision_id,
                                            "outcome": "executed", "reviewer": None, "comment": "", "error": "",
                                            "timestamp": _ts(t), "duration_ms": int(run.total_seconds() * 1000)})
    return per_agent


def _ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _mark_agents_seen(agents: dict, queue: list) -> None:
    """An agent was last seen when it made its last recorded call (as the upload would have told us)."""
    last: dict[str, str] = {}
    for timestamp, name, _record in queue:
        last[name] = max(last.get(name, ""), timestamp)
    for name, timestamp in last.items():
        seen = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        type(agents[name]).objects.filter(pk=agents[name].pk).update(last_seen_at=seen)


def load(ctx: dict) -> None:
    org = ctx["organization"]
    out = ctx.get("stdout")
    head = ChainHead.objects.filter(organization=org).first()
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    if head and head.seq >= 10_000 and EvidenceRecord.objects.filter(organization=org, timestamp__gte=recent).exists():
        ctx["evidence_records"] = head.seq
        if out is not None:
            out.write(f"  evidence already loaded ({head.seq} records in the chain)")
        return
    per_agent = generate(ctx, sessions_per_agent_day=ctx.get("evidence_sessions_per_agent_day", 18.0))
    # Upload like the fleet does: each agent's sidecar sends its own records in time-ordered batches.
    queue = sorted(
        ((r["timestamp"], name, r) for name, records in per_agent.items() for r in records), key=lambda x: x[0]
    )
    agents = ctx["agents"]
    buffers: dict[str, list[dict]] = {}
    for _, name, record in queue:
        buffer = buffers.setdefault(name, [])
        buffer.append(record)
        if len(buffer) >= 1000:
            services.evidence_batch_enqueue(agent=agents[name], records=buffer)
            buffers[name] = []
    for name, buffer in buffers.items():
        if buffer:
            services.evidence_batch_enqueue(agent=agents[name], records=buffer)
    _mark_agents_seen(agents, queue)
    head = ChainHead.objects.filter(organization=org).first()
    ctx["evidence_records"] = head.seq if head else 0
    if out is not None:
        out.write(f"  evidence: {len(queue)} records for {DAYS} days across {len(per_agent)} agents "
                  f"(chain head #{ctx['evidence_records']})")
