"""A known set of recorded calls and the policies they were (and would be) decided by."""

import datetime as dt

from cordum.policy import args_digest

BASE_POLICY = """\
version: v1
defaults:
  decision: deny
tools:
  - server: git
    tool: git_push
    topic: job.mcp-bridge.git.push
    risk_tags: [deploy]
  - server: filesystem
    tool: read_*
    topic: job.mcp-bridge.read.file
rules:
  - id: allow-reads
    match:
      topics: ["job.mcp-bridge.read.*"]
    decision: allow
    reason: Reading code is fine
  - id: approve-git-push
    match:
      topics: ["job.mcp-bridge.git.push"]
    decision: require_approval
    reason: Git push needs approval
"""

# The candidate adds a deny rule for .env reads (and one rule that can never match).
CANDIDATE_POLICY = BASE_POLICY + """\
  - id: deny-env-reads
    match:
      topics: ["job.mcp-bridge.read.*"]
      args:
        path: {glob: ["**/.env", ".env"]}
    decision: deny
    reason: Secrets stay on disk
  - id: deny-terraform-destroy
    match:
      topics: ["job.mcp-bridge.terraform.destroy"]
    decision: deny
"""

CANDIDATE_WITH_LIMITS = CANDIDATE_POLICY + """\
limits:
  session: {max_calls: 3}
"""

INVALID_POLICY = """\
version: v1
defaults:
  decision: maybe
rules:
  - id: x
    decision: allow
    colour: blue
"""

DAY1 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)

# (count, agent, team, environment, session, server, tool, args, recorded decision, rule, first timestamp)
CALLS = [
    (5, "claude-code-mo", "payments", "dev", "sess_mo_1", "filesystem", "read_file", {"path": "src/app.py"},
     "allow", "allow-reads", DAY1),
    (3, "claude-code-mo", "payments", "dev", "sess_mo_1", "filesystem", "read_file", {"path": "services/api/.env"},
     "allow", "allow-reads", DAY1 + dt.timedelta(minutes=5)),
    (2, "cursor-web", "web", "dev", "sess_web_1", "filesystem", "read_text_file", {"path": ".env"},
     "allow", "allow-reads", DAY2),
    (4, "claude-code-mo", "payments", "dev", "sess_mo_2", "git", "git_push", {"remote": "origin", "branch": "main"},
     "require_approval", "approve-git-push", DAY2 + dt.timedelta(hours=1)),
    (1, "devin-platform", "platform", "staging", "sess_dev_1", "shell", "run", {"command": "ls"},
     "deny", "", DAY2 + dt.timedelta(hours=2)),
]

EXPECTED_MATRIX = {
    "allow": {"allow": 5, "require_approval": 0, "deny": 5},
    "require_approval": {"allow": 0, "require_approval": 4, "deny": 0},
    "deny": {"allow": 0, "require_approval": 0, "deny": 1},
}


def recorded_calls(day1: dt.datetime | None = None) -> list[dict]:
    """The calls as an evidence export would list them (one dict per decision record).

    `day1` moves the whole set in time (the web window is "the last N days"); default DAY1.
    """
    shift = (day1 - DAY1) if day1 is not None else dt.timedelta(0)
    out = []
    n = 0
    for count, agent, team, env, session, server, tool, args, decision, rule, start in CALLS:
        for i in range(count):
            n += 1
            out.append({
                "record_type": "decision",
                "decision_id": f"0193a000-0000-7000-8000-{n:012d}",
                "agent": agent, "team": team, "environment": env, "session_id": session,
                "server": server, "tool": tool, "args": args, "args_digest": args_digest(args),
                "decision": decision, "rule": rule or None, "mode": "enforce",
                "timestamp": (start + shift + dt.timedelta(seconds=10 * i)).isoformat().replace("+00:00", "Z"),
            })
    return out


def decision_id(n: int) -> str:
    return f"0193a000-0000-7000-8000-{n:012d}"
