"""Two web servers and two Celery workers on one PostgreSQL and Redis: long-polls, approval wake-ups, bundle
notifications and the audit chain stay correct across processes."""

import os
import threading
import uuid

import httpx
import pytest

from tests.scale.cluster import Cluster

pytestmark = pytest.mark.slow

SETUP = """
from cordum.accounts import services as accounts
from cordum.accounts.choices import Role
from cordum.accounts.models import Team
from cordum.policies.models import PolicyRepository
from cordum.policies.services import signing_key_create
org = accounts.organization_create(name="Scale", slug="scale")
team = Team.objects.create(organization=org, name="Payments", slug="payments")
signing_key_create(organization=org)
PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent")
agent, issued = accounts.agent_create(organization=org, actor=None, name="claude-scale", kind="claude-code", team=team)
reviewer = accounts.membership_create(organization=org, actor=None, username="rita", email="rita@example.com",
                                      password="a-long-passphrase-1", role=Role.REVIEWER)
_, user_token = accounts.user_token_create(user=reviewer.user, name="scale")
print(json.dumps({"agent_token": issued.plaintext, "user_token": user_token}))
"""

PUBLISH = """
import hashlib
from django.utils import timezone
from cordum.policies import engine
from cordum.policies.models import PolicyRepository, PolicyVersion
from cordum.policies.services import bundle_publish
text, tag = sys.argv[1], sys.argv[2]
repository = PolicyRepository.objects.get(organization__slug="scale")
parsed = engine.parse_policy(text, filename="safety.yaml")
sha = hashlib.sha1(f"{tag}\\n{text}".encode()).hexdigest()
PolicyVersion.objects.filter(repository=repository, is_live=True).update(is_live=False)
version = PolicyVersion.objects.create(repository=repository, commit_sha=sha, committed_at=timezone.now(),
    branches=["main"], tag=tag, version=f"{tag}@{sha[:7]}", source_text=text, policy=parsed.policy,
    content_sha256=parsed.content_sha256, is_valid=True, is_live=True)
bundle_publish(version=version)
print(json.dumps({"version": version.version}))
"""

VERIFY = """
from cordum.accounts.models import Organization
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceRecord
org = Organization.objects.get(slug="scale")
result = verify_chain(organization_id=org.pk)
ids = list(EvidenceRecord.objects.filter(organization=org, record_type="decision", session_id__startswith="sess_b")
           .values_list("decision_id", flat=True))
print(json.dumps({"ok": result.ok, "problem": result.problem, "count": len(ids), "distinct": len(set(ids))}))
"""

POLICY = "version: v1\ndefaults:\n  decision: allow\nrules:\n  - id: r{n}\n    match: {{topics: [\"job.x.{n}\"]}}\n" \
         "    decision: deny\n    reason: \"rule {n}\"\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/14"
    with Cluster(database_url=os.environ["DATABASE_URL"], redis_url=redis_url, name="scale_out",
                 workdir=tmp_path_factory.mktemp("cluster")) as running:
        running.tokens = running.django(SETUP)
        yield running


def _publish(cluster, n: int) -> str:
    return cluster.django(PUBLISH.replace("sys.argv[1], sys.argv[2]", f"{POLICY.format(n=n)!r}, 'v{n}.0.0'"))["version"]


def _agent(cluster, url):
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {cluster.tokens['agent_token']}"},
                        timeout=60)


def test_a_long_poll_on_one_server_wakes_for_a_bundle_published_by_another_process(cluster):
    first = _publish(cluster, 1)
    a = _agent(cluster, cluster.web_urls[0])
    current = a.get("/api/v1/bundle")
    assert current.status_code == 200 and current.json()["manifest"]["version"] == first
    answer = {}
    poll = threading.Thread(target=lambda: answer.update(
        r=a.get("/api/v1/bundle", params={"wait": 25}, headers={"If-None-Match": current.headers["ETag"]})))
    poll.start()
    second = _publish(cluster, 2)  # another process: the notification crosses through Redis
    poll.join(timeout=40)
    assert answer["r"].status_code == 200  # woken with the new bundle (a 304 would mean the wait ran out)
    assert answer["r"].json()["manifest"]["version"] == second


def test_an_approval_waited_on_one_server_is_answered_by_a_reviewer_on_the_other(cluster):
    a = _agent(cluster, cluster.web_urls[0])
    opened = a.post("/api/v1/approvals", json={
        "decision_id": str(uuid.uuid4()), "session_id": "sess_scale", "server": "git", "tool": "git_push",
        "action": "git.push", "target": "origin/main", "topic": "job.mcp-bridge.git.push", "risk_tags": ["deploy"],
        "rule": "approve-git-push", "reason": "push", "args_digest": "sha256:" + "ab" * 32, "args": {},
        "diff": "", "policy_version": "v1", "timeout_seconds": 120, "on_timeout": "deny",
        "reviewers": ["role:reviewer"], "allow_self_approval": False})
    assert opened.status_code == 201, opened.text
    approval_id = opened.json()["id"]
    answer = {}
    wait = threading.Thread(target=lambda: answer.update(r=a.get(f"/api/v1/approvals/{approval_id}",
                                                                 params={"wait": 25})))
    wait.start()
    reviewer = httpx.Client(base_url=cluster.web_urls[1], timeout=30,
                            headers={"Authorization": f"Bearer {cluster.tokens['user_token']}"})
    decided = reviewer.post(f"/api/v1/approval-requests/{approval_id}/decide", json={"decision": "approve"})
    assert decided.status_code == 200, decided.text
    wait.join(timeout=40)
    assert answer["r"].json()["state"] == "approved"
    assert answer["r"].json()["reviewer"] == "rita@example.com"


def test_evidence_posted_to_both_servers_is_chained_once_by_two_workers(cluster):
    from tests.decisions.conftest import make_decision

    batches = [[make_decision(n=b * 50 + i, session_id=f"sess_b{b}") for i in range(50)] for b in range(12)]
    clients = [_agent(cluster, url) for url in cluster.web_urls]

    def post(i, batch):
        response = clients[i % 2].post("/api/v1/decisions", json={"records": batch})
        assert response.status_code == 202, response.text
        again = clients[(i + 1) % 2].post("/api/v1/decisions", json={"records": batch[:10]})  # a retry elsewhere
        assert again.status_code == 202

    threads = [threading.Thread(target=post, args=(i, batch)) for i, batch in enumerate(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    expected = {r["decision_id"] for batch in batches for r in batch}
    import time

    deadline = time.monotonic() + 60
    while True:  # the workers chain asynchronously; poll the database's own answer, bounded
        state = cluster.django(VERIFY)
        if state["count"] >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state == {"ok": True, "problem": "", "count": len(expected), "distinct": len(expected)}
