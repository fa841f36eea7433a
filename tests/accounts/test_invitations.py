"""Invitations and password resets: a member added without a password can always get in, once, in time."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cordum.accounts.choices import Role
from cordum.accounts.models import Invitation, Membership
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https?://\S+/invite/(cdm_invite_[\w-]+)/")


def _add_member(client, admin, **fields):
    client.force_login(admin.user)
    return client.post(reverse("accounts:membership_create"), {"role": Role.MEMBER, **fields})


def _password_login(client, username, password) -> bool:
    """Log in through the login page (the way people do, and the way login throttling sees it)."""
    from django.urls import reverse

    client.post(reverse("login"), {"username": username, "password": password})
    return "_auth_user_id" in client.session


def _link(mail) -> str:
    return LINK.search(mail.body).group(1)


def test_a_member_added_without_a_password_is_emailed_a_link_that_sets_it_once(client, mailoutbox, django_capture_on_commit_callbacks):
    admin = MembershipFactory(role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        _add_member(client, admin, username="newbie", email="newbie@example.com")

    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["newbie@example.com"]
    token = _link(mailoutbox[0])
    invitation = Invitation.objects.get()
    assert token not in invitation.digest  # only the digest is stored
    client.logout()
    page = client.get(f"/invite/{token}/")
    assert page.status_code == 200 and "newbie" in page.content.decode()

    response = client.post(f"/invite/{token}/", {"new_password1": "a-long-passphrase-9", "new_password2": "a-long-passphrase-9"})

    assert response.status_code == 302 and response.url == reverse("login")
    assert _password_login(client, "newbie", "a-long-passphrase-9")
    client.logout()
    again = client.post(f"/invite/{token}/", {"new_password1": "another-passphrase-9", "new_password2": "another-passphrase-9"})
    assert again.status_code == 410 and "already used" in again.content.decode()
    assert _password_login(client, "newbie", "a-long-passphrase-9")


def test_an_expired_or_revoked_invitation_link_sets_nothing(client, mailoutbox, django_capture_on_commit_callbacks):
    admin = MembershipFactory(role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        _add_member(client, admin, username="late", email="late@example.com")
    token = _link(mailoutbox[0])
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client.logout()
    assert "expired" in client.get(f"/invite/{token}/").content.decode()

    client.force_login(admin.user)
    membership = Membership.objects.get(user__username="late")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("accounts:membership_invite", args=[membership.pk]))
    fresh = _link(mailoutbox[-1])
    client.post(reverse("accounts:membership_invite_revoke", args=[membership.pk]))
    client.logout()
    response = client.post(f"/invite/{fresh}/", {"new_password1": "a-long-passphrase-9", "new_password2": "a-long-passphrase-9"})
    assert response.status_code == 410
    membership.user.refresh_from_db()
    assert not membership.user.has_usable_password()


def test_the_member_list_shows_who_is_invited_and_offers_resend(client, mailoutbox, django_capture_on_commit_callbacks):
    admin = MembershipFactory(role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        _add_member(client, admin, username="pending", email="pending@example.com")
    html = client.get(reverse("accounts:membership_list")).content.decode()
    assert "invited" in html and "Resend invitation" in html and "Revoke invitation" in html


def test_a_new_member_needs_an_email_or_a_password_and_starts_as_member(client):
    admin = MembershipFactory(role=Role.ADMIN)
    client.force_login(admin.user)
    form = client.get(reverse("accounts:membership_create")).content.decode()
    assert re.search(r'<option value="member" selected>', form)

    response = client.post(reverse("accounts:membership_create"), {"username": "ghost", "role": Role.MEMBER})

    assert response.status_code == 200 and "can never log in" in response.content.decode()
    assert not Membership.objects.filter(user__username="ghost").exists()


def test_a_weak_password_is_refused_on_the_invitation_page(client, mailoutbox, django_capture_on_commit_callbacks):
    admin = MembershipFactory(role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        _add_member(client, admin, username="weak", email="weak@example.com")
    token = _link(mailoutbox[0])
    client.logout()
    response = client.post(f"/invite/{token}/", {"new_password1": "123", "new_password2": "123"})
    assert response.status_code == 400
    assert Invitation.objects.get().accepted_at is None


def test_password_reset_mails_a_link_that_sets_a_new_password(client, mailoutbox):
    member = MembershipFactory(role=Role.MEMBER)
    response = client.post(reverse("password_reset"), {"email": member.user.email})
    assert response.status_code == 302 and len(mailoutbox) == 1
    url = re.search(r"https?://[^/\s]+(/password-reset/\S+/)", mailoutbox[0].body).group(1)
    form_url = client.get(url).url  # Django swaps the token for a session marker
    done = client.post(form_url, {"new_password1": "reset-passphrase-42", "new_password2": "reset-passphrase-42"})
    assert done.status_code == 302
    assert _password_login(client, member.user.username, "reset-passphrase-42")
