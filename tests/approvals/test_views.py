"""The reviewer queue (HTML + htmx): role checks, live partial, decide with redirect, history, diff view."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.services import approvals_expire_due


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.AUDITOR, Role.POLICY_AUTHOR])
def test_a_user_without_the_reviewer_role_gets_403_in_the_ui(client, setup, role):
    approval = setup["open"]()
    client.force_login(setup["member"](role).user)
    assert client.get(reverse("approvals:queue")).status_code == 403
    assert client.get(reverse("approvals:history")).status_code == 403
    assert client.get(reverse("approvals:detail", args=[approval.pk])).status_code == 403
    response = client.post(reverse("approvals:decide", args=[approval.pk]), {"decision": "approve"})
    assert response.status_code == 403
    approval.refresh_from_db()
    assert approval.state == "pending"


@pytest.mark.django_db
def test_the_queue_shows_the_request_with_its_context_and_the_htmx_poll_gets_the_partial(client, setup):
    approval = setup["open"]()
    client.force_login(setup["alice"].user)
    page = client.get(reverse("approvals:queue"))
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("claude-code-mo", "sess_01TEST", "file.write", "src/app.py", "approve-writes",
                 "File writes need review", 'hx-trigger="every 2s', f'id="approval-{approval.pk}"'):
        assert text in html
    assert "HX-Request" in page["Vary"]
    partial = client.get(reverse("approvals:queue"), headers={"HX-Request": "true"})
    assert "<html" not in partial.content.decode()
    assert f'id="approval-{approval.pk}"' in partial.content.decode()
    assert "HX-Request" in partial["Vary"]


@pytest.mark.django_db
def test_the_diff_is_shown_coloured_and_escaped(client, setup):
    approval = setup["open"](diff="--- a/x.html\n+++ b/x.html\n@@ -1 +1 @@\n-<b>old</b>\n+<script>alert(1)</script>\n")
    client.force_login(setup["alice"].user)
    html = client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()
    assert '<span class="d-del">-&lt;b&gt;old&lt;/b&gt;</span>' in html
    assert '<span class="d-add">+&lt;script&gt;alert(1)&lt;/script&gt;</span>' in html
    assert '<span class="d-hunk">@@ -1 +1 @@</span>' in html


@pytest.mark.django_db
def test_a_reviewer_the_policy_does_not_name_never_sees_the_real_diff_in_the_ui(client, setup):
    approval = setup["open"](reviewers=["team:payments"])
    client.force_login(setup["bob"].user)  # organisation-wide reviewer, but not named by this request's policy
    detail = client.get(reverse("approvals:detail", args=[approval.pk]))
    assert detail.status_code in (200, 404) and "-DEBUG = True" not in detail.content.decode()
    assert "-DEBUG = True" not in client.get(reverse("approvals:queue")).content.decode()
    client.force_login(setup["alice"].user)
    assert "-DEBUG = True" in client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(("on_timeout", "shown"), [("deny", "then refused (on_timeout: deny)"),
                                                   ("allow", "then runs anyway (on_timeout: allow)")])
def test_the_card_says_what_happens_at_expiry(client, setup, on_timeout, shown):
    approval = setup["open"](on_timeout=on_timeout)
    client.force_login(setup["alice"].user)
    assert shown in client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()


@pytest.mark.django_db
def test_the_navigation_shows_how_many_requests_wait_for_this_reviewer(client, setup):
    setup["open"](reviewers=["team:payments"])
    setup["open"](reviewers=["team:payments"])
    client.force_login(setup["alice"].user)
    assert '<span class="badge nav-count" title="2 waiting for you">2</span>' in client.get(reverse("approvals:history")).content.decode()
    client.force_login(setup["bob"].user)  # not named by these requests: nothing waits for him
    assert "nav-count" not in client.get(reverse("approvals:history")).content.decode()


@pytest.mark.django_db
def test_approving_in_the_ui_redirects_and_a_second_click_is_told_who_won(client, setup):
    approval = setup["open"]()
    client.force_login(setup["alice"].user)
    response = client.post(reverse("approvals:decide", args=[approval.pk]),
                           {"decision": "approve", "comment": "ok", "next": reverse("approvals:queue")})
    assert response.status_code == 302
    assert response["Location"] == reverse("approvals:queue")
    approval.refresh_from_db()
    assert (approval.state, approval.reviewer_email, approval.comment) == ("approved", "alice@example.com", "ok")

    client.force_login(setup["bob"].user)
    response = client.post(reverse("approvals:decide", args=[approval.pk]), {"decision": "deny"}, follow=True)
    assert "Already approved by alice@example.com" in response.content.decode()
    approval.refresh_from_db()
    assert approval.state == "approved"


@pytest.mark.django_db
def test_the_owner_sees_their_agents_request_without_an_approve_button(client, setup):
    approval = setup["open"]()
    client.force_login(setup["owner"].user)
    html = client.get(reverse("approvals:queue")).content.decode()
    assert f'id="approval-{approval.pk}"' in html
    assert 'value="approve"' not in html
    assert 'value="deny"' in html
    assert "another reviewer must approve" in html


@pytest.mark.django_db
def test_decided_requests_move_to_the_history(client, setup):
    approval = setup["open"]()
    client.force_login(setup["alice"].user)
    client.post(reverse("approvals:decide", args=[approval.pk]), {"decision": "deny", "comment": "too risky"})
    queue = client.get(reverse("approvals:queue")).content.decode()
    assert f'id="approval-{approval.pk}"' not in queue
    history = client.get(reverse("approvals:history")).content.decode()
    assert "too risky" in history and "alice@example.com" in history and "denied" in history
    assert "too risky" not in client.get(reverse("approvals:history") + "?state=approved").content.decode()


@pytest.mark.django_db
def test_an_overdue_request_leaves_the_queue_as_expired_on_read(client, setup):
    approval = setup["open"]()
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=approval.created_at)
    client.force_login(setup["alice"].user)
    assert f'id="approval-{approval.pk}"' not in client.get(reverse("approvals:queue")).content.decode()
    approval.refresh_from_db()
    assert approval.state == "expired"


@pytest.mark.django_db
def test_reviewers_see_that_an_on_timeout_allow_request_runs_if_nobody_decides_and_history_says_it_did(client,
                                                                                                       setup):
    allow = setup["open"](on_timeout="allow")
    deny = setup["open"]()
    client.force_login(setup["alice"].user)
    html = client.get(reverse("approvals:queue")).content.decode()
    card = html[html.index(f'id="approval-{allow.pk}"'):]
    card = card[:card.index("</article>")]
    assert "then runs anyway (on_timeout: allow)" in card
    other = html[html.index(f'id="approval-{deny.pk}"'):]
    assert "on_timeout: allow" not in other[:other.index("</article>")]
    for approval in (allow, deny):  # nobody decided in time
        ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=approval.created_at)
    assert approvals_expire_due() == 2
    history = client.get(reverse("approvals:history")).content.decode()
    assert history.count("allowed on timeout") == 1
