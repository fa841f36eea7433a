"""Session answers as the sidecar keeps them: per session, for one rule, server, tool and target pattern, within
the policy's bound (max_calls, max_minutes); never wider than the policy in force here allows."""

from cordum.sidecar.approvals import ApprovalResult, SessionGrants, session_grant_from

RECORD = {"rule": "approve-writes", "server": "filesystem", "tool": "write_file", "target": "/repo/src/app.py"}
BOUND = {"session_approval": {"max_calls": 2, "max_minutes": 10}}


def session_answer(**kw) -> ApprovalResult:
    return ApprovalResult("approved", "a1b2", "alice@example.com", scope="session", **kw)


def granted(pattern: str = "/repo/src/*", now: float = 1000.0):
    grants = SessionGrants()
    grant = session_grant_from(session_answer(target_pattern=pattern), RECORD, BOUND, now=now)
    grants.add("sess_A", grant)
    return grants, grant


def use(grants, session="sess_A", now=1001.0, **call):
    call = {**RECORD, **call}
    return grants.use(session, rule=call["rule"], server=call["server"], tool=call["tool"], target=call["target"],
                      now=now)


def test_a_session_answer_covers_matching_calls_of_its_session_only():
    grants, grant = granted()
    assert use(grants, target="/repo/src/other.py") is grant
    assert use(grants, session="sess_B") is None


def test_a_session_answer_covers_only_its_rule_server_tool_and_target_pattern():
    grants, _ = granted()
    assert use(grants, rule="approve-deploys") is None
    assert use(grants, server="git") is None
    assert use(grants, tool="edit_file") is None
    assert use(grants, target="/repo/README.md") is None


def test_without_a_pattern_only_the_same_target_is_covered():
    grants, _ = granted(pattern="")
    assert use(grants, target="/repo/src/other.py") is None
    assert use(grants) is not None


def test_the_policy_bound_on_calls_ends_the_answer():
    grants, grant = granted()
    assert [use(grants) is grant for _ in range(3)] == [True, True, False]
    assert grant.fact() == {"approval_id": "a1b2", "reviewer": "alice@example.com", "scope": "session", "use": 2,
                            "max_calls": 2}


def test_the_policy_bound_on_minutes_ends_the_answer():
    grants, _ = granted(now=1000.0)
    assert use(grants, now=1000.0 + 9 * 60) is not None
    assert use(grants, now=1000.0 + 10 * 60) is None


def test_no_grant_when_the_answer_was_once_or_the_local_policy_forbids_session_answers():
    assert session_grant_from(ApprovalResult("approved", "a1", "alice", scope="once"), RECORD, BOUND) is None
    assert session_grant_from(session_answer(), RECORD, {"session_approval": False}) is None
    assert session_grant_from(session_answer(), RECORD, {}) is None
    assert session_grant_from(ApprovalResult("denied", "a1", "alice", scope="session"), RECORD, BOUND) is None


def test_a_session_answer_kept_in_the_spool_is_shared_by_the_hook_processes_of_that_session(tmp_path):
    from cordum.sidecar.approvals import SpoolSessionGrants
    from cordum.sidecar.spool import Spool

    first, second = Spool(tmp_path / "spool.db"), Spool(tmp_path / "spool.db")  # two processes' connections
    try:
        grant = session_grant_from(session_answer(target_pattern="/repo/src/*"), RECORD, BOUND, now=1000.0)
        SpoolSessionGrants(first).add("sess_A", grant)
        store = SpoolSessionGrants(second)
        assert use(store, session="sess_B") is None
        assert use(store, target="/repo/src/x.py").fact()["use"] == 1
        assert use(store, rule="other") is None
        assert use(SpoolSessionGrants(first)).fact()["use"] == 2
        assert use(store) is None  # max_calls: 2 reached, whichever process asks
        fresh = session_grant_from(session_answer(), RECORD, BOUND, now=1000.0)
        fresh.approval_id = "later"
        SpoolSessionGrants(first).add("sess_A", fresh)
        assert use(store, now=1000.0 + 11 * 60) is None  # past max_minutes
    finally:
        first.close()
        second.close()
