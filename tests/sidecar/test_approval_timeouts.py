"""`approval.on_timeout`: which unanswered approvals let a call through (unit level; the end-to-end proofs
through a real sidecar are in test_approvals.py and tests/approvals/test_end_to_end.py)."""

from __future__ import annotations

import pytest

from cordum.sidecar.approvals import ApprovalClient, ApprovalResult, allows_on_timeout

ALLOW_15M = {"timeout": 900, "on_timeout": "allow"}


@pytest.mark.parametrize("outcome", ["timed_out", "expired"])
def test_a_timeout_over_the_policys_whole_window_allows_when_on_timeout_is_allow(outcome):
    assert allows_on_timeout(ApprovalResult(outcome), ALLOW_15M, waited_seconds=900)


@pytest.mark.parametrize("outcome", ["denied", "cancelled", "error", "approved"])
def test_anything_but_a_timeout_never_allows(outcome):
    assert not allows_on_timeout(ApprovalResult(outcome), ALLOW_15M, waited_seconds=900)


@pytest.mark.parametrize("approval", [{"timeout": 900, "on_timeout": "deny"}, {"timeout": 900}, {}])
def test_deny_is_the_default_and_refuses_on_timeout(approval):
    assert not allows_on_timeout(ApprovalResult("timed_out"), approval, waited_seconds=900)


def test_a_wait_cut_short_by_a_local_cap_refuses_even_with_on_timeout_allow():
    client = ApprovalClient(client=None, max_wait_seconds=60)  # type: ignore[arg-type]
    waited = client.wait_seconds(900)
    assert waited == 60
    assert not allows_on_timeout(ApprovalResult("timed_out"), ALLOW_15M, waited_seconds=waited)
    assert allows_on_timeout(ApprovalResult("timed_out"), {"timeout": 30, "on_timeout": "allow"},
                             waited_seconds=client.wait_seconds(30))
