"""schemathesis over the published OpenAPI schema: every operation gets a bounded number of generated requests,
valid and invalid, each sent as an admin's API token and as an agent's token; no answer may be a 5xx or break
the published schema. Every failure is collected, so one run lists them all."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from cordum.accounts import services as account_services
from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, OrganizationFactory, agent_with_token

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 12  # per generation mode (valid, invalid)


@pytest.fixture
def in_process_wsgi():
    """As Django's test client does: requests served in-process must not close the test's database connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def role_headers():
    """Authorization headers of each kind of caller the API serves: a person (admin) and an agent."""
    org = OrganizationFactory(slug="fuzz", name="Fuzz")
    user = MembershipFactory(organization=org, role=Role.ADMIN).user
    _token, admin_token = account_services.user_token_create(user=user, name="fuzz")
    _agent, issued = agent_with_token(organization=org, name="claude-code-fuzz")
    return {"admin": {"Authorization": f"Bearer {admin_token}"},
            "agent": {"Authorization": f"Bearer {issued.plaintext}"}}


def test_no_operation_answers_a_server_error_or_breaks_its_schema(in_process_wsgi, role_headers):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", in_process_wsgi)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the schema lost its operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck), derandomize=True, database=None)
            def run(case):
                for headers in role_headers.values():
                    case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, all reported below
                failures[f"{operation.label} ({mode})"] = str(exc)[:2500]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
