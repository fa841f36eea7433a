"""Demo approvals: a few held calls waiting for a reviewer and a few decided ones. Idempotent.

Rows are keyed by deterministic decision ids, so a second run changes nothing. Pending requests expire
a week after the first run (the demo's reviewer queue is not empty when you open it).
"""

import uuid
from datetime import timedelta

from django.utils import timezone

from cordum.approvals.choices import ApprovalState
from cordum.approvals.models import ApprovalRequest
from cordum.policy import args_digest

NAMESPACE = uuid.UUID("a7d4c1e2-5b3f-4e8a-9c6d-1f2e3a4b5c6d")
# The template's defaults.approval offers "approve for this session" within this bound (every demo rule inherits it).
SESSION_BOUND = {"max_calls": 25, "max_minutes": 60}

CHECKOUT_DIFF = """--- a/src/components/Checkout.tsx
+++ b/src/components/Checkout.tsx
@@ -12,9 +12,11 @@ export function Checkout({ cart }: Props) {
   const total = cart.items.reduce((sum, item) => sum + item.price * item.qty, 0);
-  const tax = total * 0.2;
+  const tax = Math.round(total * TAX_RATE * 100) / 100;
+  const shipping = total > FREE_SHIPPING_THRESHOLD ? 0 : SHIPPING_FEE;
   return (
     <form onSubmit={submit}>
-      <Summary total={total} tax={tax} />
+      <Summary total={total} tax={tax} shipping={shipping} />
       <PayButton disabled={!cart.items.length} />
     </form>
   );
"""

LEDGER_DIFF = """--- a/src/ledger.py
+++ b/src/ledger.py
@@ -40,7 +40,8 @@ def refund(charge_id: str, amount: Decimal) -> Refund:
     charge = Charge.objects.select_for_update().get(pk=charge_id)
-    if amount > charge.amount:
+    already = charge.refunds.aggregate(s=Sum("amount"))["s"] or Decimal("0")
+    if amount + already > charge.amount:
         raise RefundTooLarge(charge_id)
     return Refund.objects.create(charge=charge, amount=amount)
"""

# (key, agent, state, reviewer username, comment, server, tool, action, target, rule, reason, tags, args, diff)
# Rule, reason, action, target and tags are what the demo's live policy (v1.2.0) decides for each call.
DEMO_REQUESTS = [
    ("push-main", "claude-code-mo", ApprovalState.PENDING, None, "", "git", "git_push", "git.push", "origin/main",
     "approve-git-push", "Git push to remote requires approval", ["deploy"],
     {"repo_path": "/src/payments-api", "remote": "origin", "branch": "main"}, ""),
    ("checkout-write", "cursor-web", ApprovalState.PENDING, None, "", "filesystem", "write_file", "write.file",
     "src/components/Checkout.tsx", "approve-code-write", "File writes need developer review", ["code-change"],
     {"path": "src/components/Checkout.tsx", "content": "[redacted: 1.2 kB]"}, CHECKOUT_DIFF),
    ("ledger-edit", "claude-code-alice", ApprovalState.PENDING, None, "", "filesystem", "edit_file", "write.file",
     "src/ledger.py", "approve-code-write", "File writes need developer review", ["code-change"],
     {"path": "src/ledger.py", "edits": "[redacted]"}, LEDGER_DIFF),
    ("push-feature", "claude-code-mo", ApprovalState.APPROVED, "alice", "Refund fix reviewed in PR #412", "git",
     "git_push", "git.push", "origin/fix-refund-rounding", "approve-git-push", "Git push to remote requires approval",
     ["deploy"], {"repo_path": "/src/payments-api", "remote": "origin", "branch": "fix-refund-rounding"}, ""),
    ("infra-apply", "devin-platform", ApprovalState.DENIED, "admin", "No new dependencies during the freeze",
     "claude-code", "Bash", "shell.pip-install", "pip install boto3-stubs", "approve-dependency-install",
     "New dependencies need review (supply chain)", [], {"command": "pip install boto3-stubs"}, ""),
    ("force-push", "cursor-web", ApprovalState.EXPIRED, None, "", "git", "git_push", "git.force-push", "origin/main",
     "approve-git-push", "Git push to remote requires approval", ["deploy"],
     {"repo_path": "/src/web-app", "remote": "origin", "branch": "main", "force": True}, ""),
]


def load(ctx: dict) -> None:
    org = ctx["organization"]
    agents = ctx.get("agents") or {}
    users = ctx.get("users") or {}
    now = timezone.now()
    live = ctx.get("live_policy_version")
    policy_version = live.version if live is not None else "v1.0.0"
    created = 0
    for index, (key, agent_name, state, reviewer, comment, server, tool, action, target, rule, reason, tags,
                arguments, diff) in enumerate(DEMO_REQUESTS):
        agent = agents.get(agent_name)
        if agent is None:
            continue
        decision_id = str(uuid.uuid5(NAMESPACE, f"{org.slug}:{key}"))
        opened = now - timedelta(minutes=5 + 47 * index)
        user = users.get(reviewer) if reviewer else None
        decided = state != ApprovalState.PENDING
        _, was_created = ApprovalRequest.objects.get_or_create(
            agent=agent, decision_id=decision_id,
            defaults={
                "organization": org, "session_id": f"sess_demo_{agent_name}", "server": server, "tool": tool,
                "action": action, "target": target, "topic": f"job.mcp-bridge.{action}", "risk_tags": tags,
                "rule": rule, "reason": reason, "args_digest": args_digest(arguments), "args": arguments,
                "diff": ApprovalRequest.seal_diff(diff) if not decided else "",
                "policy_version": policy_version, "reviewers": ["role:reviewer"], "state": state, "reviewer": user,
                "session_approval": SESSION_BOUND, "scope": "once" if state == ApprovalState.APPROVED else "",
                "reviewer_email": (user.email if user else ""), "comment": comment, "created_at": opened,
                "expires_at": opened + (timedelta(minutes=15) if decided else timedelta(days=7)),
                "decided_at": opened + timedelta(minutes=3 if state != ApprovalState.EXPIRED else 15) if decided
                else None,
                "consumed_at": opened + timedelta(minutes=3, seconds=1) if state == ApprovalState.APPROVED else None,
            },
        )
        created += was_created
    stdout = ctx.get("stdout")
    if stdout is not None:
        stdout.write(f"  approvals: {created} demo requests created "
                     f"({ApprovalRequest.objects.filter(organization=org, state='pending').count()} pending)")
