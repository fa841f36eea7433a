"""Missing pages and server errors answer with the product's pages, never Django's debug page."""

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_the_products_404(client, settings):
    settings.DEBUG = False
    client.force_login(MembershipFactory(role=Role.MEMBER).user)
    response = client.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert "Not found" in html and "/no/such/page/" in html and "Back to the dashboard" in html
    assert "Page not found at" not in html and "URLconf" not in html


def test_a_server_error_is_the_products_500_page():
    response = server_error(RequestFactory().get("/"))
    html = response.content.decode()
    assert response.status_code == 500 and "Something went wrong" in html and "Traceback" not in html
