from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    POLICY_AUTHOR = "policy_author", "Policy author"
    REVIEWER = "reviewer", "Reviewer"
    AUDITOR = "auditor", "Auditor"
    MEMBER = "member", "Member"


class AgentKind(models.TextChoices):
    CLAUDE_CODE = "claude-code", "Claude Code"
    CURSOR = "cursor", "Cursor"
    DEVIN = "devin", "Devin"
    OTHER = "other", "Other"


class Environment(models.TextChoices):
    DEV = "dev", "dev"
    STAGING = "staging", "staging"
    PROD = "prod", "prod"


class AuditAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    ROTATE = "rotate", "Rotate"
    REVOKE = "revoke", "Revoke"
    ACTION = "action", "Action"
