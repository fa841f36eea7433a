"""Demo organisation: teams, one user per role, agents. Idempotent (re-running changes nothing)."""

from django.contrib.auth import get_user_model

from cordum.accounts import services
from cordum.accounts.choices import AgentKind, Role
from cordum.accounts.models import Agent, Membership, Organization, Team

DEMO_PASSWORD = "cordum-demo"  # noqa: S105 - printed by `make demo`, local only
DEMO_USERS = [
    ("admin", "admin@example.com", Role.ADMIN, []),
    ("author", "author@example.com", Role.POLICY_AUTHOR, []),
    ("alice", "alice@example.com", Role.REVIEWER, ["payments", "web"]),
    ("audrey", "audrey@example.com", Role.AUDITOR, []),
    ("mo", "mo@example.com", Role.MEMBER, ["payments"]),
]
DEMO_TEAMS = [("Payments", "payments"), ("Platform", "platform"), ("Web", "web")]
DEMO_AGENTS = [
    ("claude-code-mo", AgentKind.CLAUDE_CODE, "payments", "dev", "mo"),
    ("claude-code-alice", AgentKind.CLAUDE_CODE, "payments", "dev", "alice"),
    ("cursor-web", AgentKind.CURSOR, "web", "dev", "mo"),
    ("devin-platform", AgentKind.DEVIN, "platform", "staging", "admin"),
    ("claude-code-ci", AgentKind.CLAUDE_CODE, "platform", "prod", "admin"),
]


def load(ctx: dict) -> None:
    """Create the demo org; puts `organization`, `users`, `agents`, `agent_tokens` into ctx."""
    User = get_user_model()
    org, _ = Organization.objects.get_or_create(slug="acme", defaults={"name": "Acme Corp"})
    ctx["organization"] = org
    teams = {}
    for name, slug in DEMO_TEAMS:
        teams[slug], _ = Team.objects.get_or_create(organization=org, slug=slug, defaults={"name": name})
    users = {}
    for username, email, role, team_slugs in DEMO_USERS:
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        membership, _ = Membership.objects.get_or_create(organization=org, user=user, defaults={"role": role})
        membership.teams.set([teams[s] for s in team_slugs])
        users[username] = user
    ctx["users"] = users
    admin = users["admin"]
    tokens = ctx.setdefault("agent_tokens", {})
    for name, kind, team, env, owner in DEMO_AGENTS:
        agent = Agent.objects.filter(organization=org, name=name).first()
        if agent is None:
            agent, issued = services.agent_create(
                organization=org, actor=admin, name=name, kind=kind, team=teams[team], environment=env,
                owner=users[owner],
            )
        else:
            issued = services.agent_token_rotate(agent=agent, actor=admin)
        tokens[name] = issued.plaintext
    ctx["agents"] = {a.name: a for a in Agent.objects.filter(organization=org)}
