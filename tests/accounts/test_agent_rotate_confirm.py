"""Rotating an agent's token asks first, as revoking does: the running sidecar's token stops working at once."""

import re

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, agent_with_token

pytestmark = pytest.mark.django_db


def test_the_rotate_button_asks_for_confirmation_naming_the_agent(client):
    admin = MembershipFactory(role=Role.ADMIN)
    agent, _ = agent_with_token(organization=admin.organization, name="claude-code-mo")
    client.force_login(admin.user)
    html = client.get(reverse("accounts:agent_list")).content.decode()
    action = reverse("accounts:agent_rotate", args=[agent.pk])
    form = re.search(rf'<form[^>]*action="{action}"[^>]*>', html).group(0)
    assert "return confirm('Rotate the token of claude-code-mo?" in form
