"""`cordum policy check --remote URL`: the branch simulation, run by the control plane, from CI.

It asks the control plane to simulate the commit being checked (synced from the policy repository by its
webhook) over the recorded calls of the last days, follows the run's progress on stderr, prints the summary
and answers with an exit code CI can gate on: 0 passed, 1 the gate failed, 2 the check could not run. No Django
here: it speaks the HTTP API with a user token, as any client would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpx comes with cordum[sidecar]; the rest of the CLI does not need it
    import httpx

SYNC_RETRY_SECONDS = 5
POLL_SECONDS = 2
_NOT_SYNCED = "no synced policy version for commit"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _head_commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("message") or body.get("detail") or body) if isinstance(body, dict) else str(body)


def _create(client: httpx.Client, args, commit: str | None) -> httpx.Response | None:
    """POST the simulation, waiting for the commit to be synced; with --policy, fall back to the file's text."""
    body: dict = {"days": args.days}
    if args.fail_if_newly_denied_over is not None:
        body["fail_if_newly_denied_over"] = args.fail_if_newly_denied_over
    deadline = time.monotonic() + args.wait_for_sync
    while commit:
        response = client.post("/api/v1/simulations", json={**body, "candidate_commit": commit})
        if response.status_code != 400 or _NOT_SYNCED not in _message(response):
            return response
        if time.monotonic() >= deadline:
            break
        _say(f"cordum: waiting for the control plane to sync {commit[:12]}…")
        time.sleep(SYNC_RETRY_SECONDS)
    if not args.policy:
        _say(f"cordum: the control plane has no policy version for commit {commit or '(none)'}; give --policy "
             "safety.yaml to simulate the file instead")
        return None
    _say(f"cordum: simulating {args.policy} as pasted text (commit {commit or '(none)'} is not synced)")
    return client.post("/api/v1/simulations", json={**body, "policy_yaml": Path(args.policy).read_text()})


def _summary(sim: dict) -> list[str]:
    s = (sim.get("report") or {}).get("summary") or {}
    lines = [f"Simulation {sim['id']} of {sim['candidate'].get('label') or 'the candidate'} over "
             f"{s.get('total_calls', 0):,} recorded calls: {s.get('changed_calls', 0):,} change decision "
             f"({s.get('newly_denied', 0):,} newly denied, {s.get('newly_require_approval', 0):,} newly need "
             f"approval, {s.get('newly_allowed', 0):,} newly allowed).", sim.get("url") or ""]
    gate = sim.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "FAILED"
        lines.append(f"Gate {verdict}: {gate['newly_denied']} newly denied, at most "
                     f"{gate['fail_if_newly_denied_over']} allowed.")
    return [line for line in lines if line]


def check(args) -> int:
    import httpx

    token = os.environ.get(args.token_env, "")
    if not token:
        _say(f"cordum policy check: set {args.token_env} to a user API token of the control plane")
        return 2
    commit = args.commit or _head_commit()
    with httpx.Client(base_url=args.remote.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                      timeout=30.0) as client:
        try:
            response = _create(client, args, commit)
            if response is None:
                return 2
            if response.status_code >= 400:
                _say(f"cordum policy check: the control plane refused the simulation: {_message(response)}")
                return 2
            sim = response.json()
            shown = None
            while sim["status"] in ("queued", "running"):
                line = f"cordum: {sim['status']} {100 * (sim.get('progress') or 0):.0f}% " \
                       f"({sim.get('rows_processed') or 0:,} of {sim.get('rows_total') or 0:,} calls)"
                if line != shown:
                    _say(line)
                    shown = line
                time.sleep(POLL_SECONDS)
                sim = client.get(f"/api/v1/simulations/{sim['id']}").raise_for_status().json()
        except httpx.HTTPError as exc:
            _say(f"cordum policy check: cannot reach the control plane at {args.remote}: {exc}")
            return 2
    if sim["status"] != "completed":
        _say(f"cordum policy check: the simulation failed: {sim.get('error') or sim['status']}")
        return 2
    print("\n".join(_summary(sim)))
    gate = sim.get("gate")
    return 1 if gate and not gate["passed"] else 0


def add_check_parser(psub) -> None:
    c = psub.add_parser("check", help="simulate this commit on the control plane over recorded calls; exit 1 if "
                        "its gate fails", description=__doc__.split("\n\n")[1].replace("\n", " "))
    c.add_argument("--remote", required=True, help="the control plane's URL")
    c.add_argument("--commit", help="the commit to simulate (default: git rev-parse HEAD)")
    c.add_argument("--policy", help="safety.yaml to simulate as text if the commit is not synced in time")
    c.add_argument("--days", type=int, default=7, help="recorded calls of the last N days (default 7)")
    c.add_argument("--fail-if-newly-denied-over", type=int, default=None, metavar="N",
                   help="fail (exit 1) when more than N recorded calls would newly be denied")
    c.add_argument("--wait-for-sync", type=float, default=120, metavar="SECONDS",
                   help="how long to wait for the control plane to sync the commit (default 120)")
    c.add_argument("--token-env", default="CORDUM_TOKEN", help="environment variable holding the user API token")
    c.set_defaults(func=check)
