from django import forms
from django.contrib.auth import get_user_model

from cordum.accounts.choices import AgentKind, Environment, Role
from cordum.accounts.models import Team


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


TEAMS_HELP = ("The teams whose evidence and held calls a member, reviewer or policy author reads. None selected: "
              "reviewers and policy authors read every team's, a member only their own agents'. "
              "Admins and auditors read every team's.")


class MembershipCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False, help_text="A new member gets an invitation here to set a password.")
    password = forms.CharField(widget=forms.PasswordInput, required=False,
                               help_text="Optional: set a password instead of sending an invitation.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER,
                             help_text="Start with the least privilege; you can raise it later.")
    teams = forms.ModelMultipleChoiceField(queryset=Team.objects.none(), required=False, help_text=TEAMS_HELP)

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teams"].queryset = Team.objects.filter(organization=organization)

    def clean(self):
        data = super().clean()
        existing = get_user_model().objects.filter(username=data.get("username")).exists()
        if not existing and not data.get("email") and not data.get("password"):
            self.add_error("email", "Give an email for the invitation (or a password): otherwise they can never log in.")
        return data


class MembershipUpdateForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
    teams = forms.ModelMultipleChoiceField(queryset=Team.objects.none(), required=False, help_text=TEAMS_HELP)

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teams"].queryset = Team.objects.filter(organization=organization)


class AgentForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits, - and _; e.g. claude-code-alice")
    kind = forms.ChoiceField(choices=AgentKind.choices)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    environment = forms.ChoiceField(choices=Environment.choices)
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), required=False,
        help_text="The person the agent works for: they may not approve its held calls (unless the policy allows "
                  "self-approval). Empty: you.",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(organization=organization)
        self.fields["owner"].queryset = get_user_model().objects.filter(
            memberships__organization=organization).order_by("username")


class AgentFilterForm(forms.Form):
    team = forms.CharField(required=False)
    kind = forms.ChoiceField(choices=[("", "any kind"), *AgentKind.choices], required=False)
    environment = forms.ChoiceField(choices=[("", "any environment"), *Environment.choices], required=False)
    active = forms.ChoiceField(choices=[("", "active or not"), ("true", "active"), ("false", "revoked")], required=False)
