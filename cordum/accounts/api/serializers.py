from rest_framework import serializers

from cordum.accounts.choices import AgentKind, Environment, Role
from cordum.accounts.models import Agent, Membership, Team


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "description", "created_at"]
        read_only_fields = ["id", "slug", "created_at"]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)  # accounts may predate email checks
    teams = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "teams", "created_at"]


class MembershipCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=Role.choices)
    teams = serializers.ListField(child=serializers.SlugField(), required=False, default=list)


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    teams = serializers.ListField(child=serializers.SlugField(), required=False)


class AgentSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    owner = serializers.CharField(source="owner.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Agent
        fields = ["id", "name", "kind", "team", "environment", "owner", "is_active", "last_seen_at", "created_at"]


OWNER_HELP = "Username of the member the agent works for (they may not approve its held calls); default: you."


class AgentCreateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    kind = serializers.ChoiceField(choices=AgentKind.choices)
    team = serializers.SlugField(required=False, allow_null=True, default=None)
    environment = serializers.ChoiceField(choices=Environment.choices, default=Environment.DEV)
    owner = serializers.CharField(required=False, allow_null=True, default=None, help_text=OWNER_HELP)


class AgentUpdateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=AgentKind.choices, required=False)
    team = serializers.SlugField(required=False, allow_null=True)
    environment = serializers.ChoiceField(choices=Environment.choices, required=False)
    owner = serializers.CharField(required=False, help_text=OWNER_HELP)


class AgentTokenSerializer(serializers.Serializer):
    agent = AgentSerializer()
    token = serializers.CharField(help_text="Shown once. Store it in the sidecar's token file or env var.")
