from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm

from cordum.accounts.choices import AgentKind, Environment, Role
from cordum.accounts.models import Team
from cordum.common.forms import FilterForm


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


class AgentFilterForm(FilterForm):
    team = forms.CharField(required=False)
    kind = forms.ChoiceField(choices=[("", "any kind"), *AgentKind.choices], required=False)
    environment = forms.ChoiceField(choices=[("", "any environment"), *Environment.choices], required=False)
    active = forms.ChoiceField(choices=[("", "active or not"), ("true", "active"), ("false", "revoked")], required=False)


class CordumLoginForm(AuthenticationForm):
    """Password login, refused for people whose organisations sign in only with single sign-on."""

    def confirm_login_allowed(self, user):
        from cordum.accounts.sso import password_login_refusal

        super().confirm_login_allowed(user)
        refusal = password_login_refusal(user)
        if refusal:
            raise forms.ValidationError(refusal, code="sso_only")


class SingleSignOnForm(forms.Form):
    enabled = forms.BooleanField(required=False, initial=True)
    issuer = forms.URLField(max_length=300, help_text="e.g. https://login.example.com/realms/acme")
    client_id = forms.CharField(max_length=200)
    client_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                    help_text="Stored encrypted; leave empty to keep the current one.")
    allowed_domains = forms.CharField(required=False, help_text="Comma separated, e.g. acme.com, acme.dev (empty: any)")
    groups_claim = forms.CharField(max_length=100, initial="groups")
    group_mappings = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 5}),
        help_text="One line per group: GROUP: ROLE [TEAM ...], e.g. “payments-devs: member payments”. The first "
                  "line that matches one of a person's groups gives the role; teams add up.")
    default_role = forms.ChoiceField(choices=[("", "refuse them"), *Role.choices], required=False,
                                     help_text="For people whose groups match no line.")
    password_login = forms.BooleanField(required=False, initial=True,
                                        help_text="Off: members of this organisation must use single sign-on.")

    def clean_group_mappings(self):
        mappings = []
        for n, line in enumerate(self.cleaned_data["group_mappings"].splitlines(), start=1):
            if not line.strip():
                continue
            group, sep, rest = line.partition(":")
            words = rest.split()
            if not sep or not group.strip() or not words:
                raise forms.ValidationError(f"Line {n}: write GROUP: ROLE [TEAM ...]")
            mappings.append({"group": group.strip(), "role": words[0], "teams": words[1:]})
        return mappings

    @staticmethod
    def mappings_as_text(mappings) -> str:
        return "\n".join(f"{m['group']}: {' '.join([m['role'], *m.get('teams', [])])}" for m in mappings)
