"""The link a chat notification carries: signed, single-use, opening the card after login for an eligible
reviewer only; only its digest is stored."""

import re

import pytest
from django.test import Client

from cordum.accounts.choices import Role
from cordum.approvals import services
from cordum.approvals.models import ApprovalRequest
from cordum.common.crypto import token_digest
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def _link(approval) -> str:
    text = services.approval_notification_text(
        approval=ApprovalRequest.objects.select_related("organization", "agent").get(pk=approval.pk))
    return re.search(r"(/approvals/link/[^ ]+/)", text).group(1)


def test_a_notification_link_opens_the_card_once_after_login(setup):
    approval = setup["open"]()
    link = _link(approval)
    approval.refresh_from_db()
    assert approval.link_digest == token_digest(link.split("/")[-2]) and link.split("/")[-2] not in str(
        ApprovalRequest.objects.filter(pk=approval.pk).values().first())
    client = Client()
    assert client.get(link).status_code == 302 and "/login/" in client.get(link)["Location"]  # login first
    client.force_login(setup["alice"].user)
    opened = client.get(link)
    assert opened.status_code == 302 and opened["Location"] == f"/approvals/{approval.pk}/"
    again = client.get(link)
    assert again.status_code == 410 and "already used" in again.content.decode()


def test_a_forged_replaced_or_foreign_link_opens_nothing(setup):
    approval = setup["open"]()
    old = _link(approval)
    new = _link(approval)  # a newer notification replaces the link
    client = Client()
    client.force_login(setup["alice"].user)
    assert client.get(old).status_code == 410
    token = new.split("/")[-2]
    forged = token.replace(":", ":A", 1)  # tampered timestamp: the signature no longer holds
    assert client.get(f"/approvals/link/{forged}/").status_code == 404
    web = TeamFactory(organization=setup["org"], slug="web", name="Web")
    outsider = setup["member"](Role.REVIEWER, [web], username="eve", email="eve@example.com")  # another team
    other = Client()
    other.force_login(outsider.user)
    assert other.get(new).status_code == 404
    assert client.get(new).status_code == 302  # the outsider did not spend it
