"""Fault tests reuse the evidence pipeline's organisation (two teams, agents with real tokens)."""

from tests.decisions.conftest import org_setup  # noqa: F401
