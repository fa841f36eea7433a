"""The reviewer's journey in real Chromium: a held call appears in the queue without a reload, the reviewer
opens its diff and approves it; and the keyboard path (j/o/d)."""

import hashlib
import json
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory, agent_with_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

DIFF = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,2 +1,2 @@\n import os\n-DEBUG = True\n+DEBUG = False\n"


@pytest.fixture
def reviewer_world():
    org = OrganizationFactory()
    alice = MembershipFactory(organization=org, role=Role.REVIEWER,
                              user=UserFactory(username="alice", email="alice@example.com"))
    owner = MembershipFactory(organization=org, role=Role.MEMBER, user=UserFactory(username="mo"))
    _agent, issued = agent_with_token(organization=org, name="claude-code-mo", owner=owner.user)
    return {"org": org, "alice": alice, "token": issued.plaintext}


def sidecar_opens(live_server, token: str, *, target: str = "src/app.py", **extra) -> str:
    """What the sidecar does for a held write: POST /api/v1/approvals on the live server."""
    arguments = {"path": target, "content": "import os\nDEBUG = False\n"}
    body = {
        "decision_id": str(uuid.uuid4()), "session_id": "sess_browser", "server": "filesystem", "tool": "write_file",
        "action": "file.write", "target": target, "topic": "job.mcp-bridge.write.file", "risk_tags": ["code-change"],
        "rule": "approve-file-writes", "reason": "File writes pause for developer review",
        "args_digest": "sha256:" + hashlib.sha256(json.dumps(arguments).encode()).hexdigest(), "args": arguments,
        "diff": DIFF, "policy_version": "v1.0.0@abc1234", "timeout_seconds": 900, "reviewers": ["role:reviewer"],
        **extra,
    }
    response = httpx.post(f"{live_server.url}/api/v1/approvals", json=body,
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_reviewer_sees_a_request_appear_live_opens_the_diff_and_approves(login, live_server, page, reviewer_world):
    login("alice")
    page.click("nav >> text=Approvals")
    expect(page.locator("#queue")).to_contain_text("No requests are waiting for you")
    page.evaluate("window.__notReloaded = true")

    approval_id = sidecar_opens(live_server, reviewer_world["token"])
    card = page.locator(f"#approval-{approval_id}")
    expect(card).to_be_visible()  # arrives through the 2 s htmx poll
    assert page.evaluate("window.__notReloaded") is True  # no reload happened
    for text in ("claude-code-mo", "sess_browser", "file.write", "src/app.py", "approve-file-writes",
                 "File writes pause for developer review"):
        expect(card).to_contain_text(text)

    diff = card.locator("details.approval-diff")
    expect(diff.locator(".d-add")).to_be_hidden()
    diff.locator("summary").click()
    expect(diff.locator(".d-add")).to_have_text("+DEBUG = False")
    expect(diff.locator(".d-del")).to_have_text("-DEBUG = True")
    # Let a live-update tick swap the queue: the opened diff stays open (hx-preserve).
    page.evaluate("window.__swaps = 0; document.body.addEventListener('htmx:afterSwap', () => window.__swaps++)")
    page.wait_for_function("window.__swaps >= 1")
    expect(diff.locator(".d-add")).to_be_visible()

    card.locator("textarea[name=comment]").fill("looks right")
    card.locator("button.approve").click()
    expect(page.locator("#flash")).to_contain_text("Approved")
    expect(card).to_have_count(0)
    approval = ApprovalRequest.objects.get(pk=approval_id)
    assert (approval.state, approval.reviewer_email, approval.comment) == ("approved", "alice@example.com",
                                                                           "looks right")


def test_reviewer_can_work_the_queue_with_the_keyboard(login, live_server, page, reviewer_world):
    first = sidecar_opens(live_server, reviewer_world["token"], target="src/one.py")
    second = sidecar_opens(live_server, reviewer_world["token"], target="src/two.py")
    login("alice")
    page.goto(f"{live_server.url}/approvals/")
    expect(page.locator(f"#approval-{first}")).to_have_class("card approval selected")
    page.keyboard.press("j")
    expect(page.locator(f"#approval-{second}")).to_have_class("card approval selected")
    page.keyboard.press("o")
    expect(page.locator(f"#approval-{second} .d-add")).to_be_visible()
    page.keyboard.press("d")
    expect(page.locator(f"#approval-{second}")).to_have_count(0)
    expect(page.locator("#flash")).to_contain_text("Denied")
    assert ApprovalRequest.objects.get(pk=second).state == "denied"
    assert ApprovalRequest.objects.get(pk=first).state == "pending"


def test_reviewer_approves_for_this_session_with_a_wider_target_pattern(login, live_server, page, reviewer_world):
    approval_id = sidecar_opens(live_server, reviewer_world["token"],
                                session_approval={"max_calls": 10, "max_minutes": 30})
    login("alice")
    page.goto(f"{live_server.url}/approvals/")
    card = page.locator(f"#approval-{approval_id}")
    expect(card.locator(".session-bound")).to_contain_text("up to 10 calls, for 30 min")
    card.locator("details.approval-context-lazy summary").click()  # the context loads when opened
    expect(card.locator(".approval-context .similar")).to_contain_text("Similar past decisions")
    expect(card.locator(".approval-context .similar")).to_contain_text("none yet")
    pattern = card.locator("input[name=target_pattern]")
    expect(pattern).to_have_value("src/app.py")
    pattern.fill("src/*")
    card.locator("button.approve-session").click()
    expect(page.locator("#flash")).to_contain_text("Approved for this session")
    expect(card).to_have_count(0)
    approval = ApprovalRequest.objects.get(pk=approval_id)
    assert (approval.state, approval.scope, approval.target_pattern) == ("approved", "session", "src/*")


def test_the_s_key_approves_for_the_session_and_a_two_person_card_counts_approvals(login, live_server, page,
                                                                                     reviewer_world):
    session_id = sidecar_opens(live_server, reviewer_world["token"], session_approval={"max_calls": 3})
    login("alice")
    page.goto(f"{live_server.url}/approvals/")
    expect(page.locator(f"#approval-{session_id}")).to_have_class("card approval selected")
    page.keyboard.press("s")
    expect(page.locator(f"#approval-{session_id}")).to_have_count(0)
    assert ApprovalRequest.objects.get(pk=session_id).scope == "session"

    two = sidecar_opens(live_server, reviewer_world["token"], approvals_required=2)
    card = page.locator(f"#approval-{two}")
    expect(card.locator(".approval-progress")).to_contain_text("0 of 2 approvals")
    expect(card.locator("button.approve-session")).to_have_count(0)  # the policy did not offer it
    card.locator("button.approve").click()
    expect(page.locator("#flash")).to_contain_text("1 of 2 approvals")
    page.goto(f"{live_server.url}/approvals/{two}/")
    expect(page.locator(".approval-progress")).to_contain_text("1 of 2 approvals — alice@example.com")
    expect(page.locator("button.approve")).to_have_count(0)  # alice counted once; another reviewer must approve
    assert ApprovalRequest.objects.get(pk=two).state == "pending"


def test_a_request_arriving_while_the_queue_is_open_raises_a_browser_notification(login, live_server, page,
                                                                                   reviewer_world):
    page.context.grant_permissions(["notifications"], origin=live_server.url)
    page.add_init_script("""
        window.__notifications = [];
        window.Notification = class { constructor(title, options) { window.__notifications.push({title, ...options}); }
                                      static get permission() { return "granted"; } };
    """)  # records what the page shows; the permission itself is granted to the real browser context above
    login("alice")
    page.click("nav >> text=Approvals")
    old = sidecar_opens(live_server, reviewer_world["token"], target="src/old.py")
    page.reload()
    expect(page.locator(f"#approval-{old}")).to_be_visible()

    new = sidecar_opens(live_server, reviewer_world["token"], target="src/new.py")
    expect(page.locator(f"#approval-{new}")).to_be_visible()
    page.wait_for_function("window.__notifications.length >= 1")
    [shown] = page.evaluate("window.__notifications")
    assert shown["title"] == "Cordum: approval needed" and shown["tag"] == new
    assert shown["body"] == "claude-code-mo: file.write on src/new.py"
