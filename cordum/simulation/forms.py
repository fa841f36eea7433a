from django import forms

from cordum.accounts.choices import Environment
from cordum.accounts.models import Agent, Team
from cordum.policies.models import PolicyVersion
from cordum.simulation.choices import Baseline
from cordum.simulation.services import MAX_DAYS


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: PolicyVersion) -> str:
        branches = ", ".join(obj.branches or [])
        flags = " · live" if obj.is_live else ""
        flags += "" if obj.is_valid else " · INVALID"
        return f"{obj.repository.name}: {obj.version}{f' [{branches}]' if branches else ''} — {obj.first_line}{flags}"


class SimulationForm(forms.Form):
    candidate_version = VersionChoiceField(
        queryset=PolicyVersion.objects.none(), required=False, empty_label="— paste or upload instead —",
        help_text="A synced commit: a branch head, a pull request's commit, the live version.",
    )
    policy_yaml = forms.CharField(
        required=False, label="…or paste safety.yaml",
        widget=forms.Textarea(attrs={"rows": 8, "class": "mono", "placeholder": "version: v1\nrules: …"}),
    )
    policy_file = forms.FileField(required=False, label="…or upload safety.yaml")
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, initial=7, label="Window (days)")
    team = forms.ChoiceField(required=False)
    agent = forms.ChoiceField(required=False)
    environment = forms.ChoiceField(required=False, choices=[("", "any environment"), *Environment.choices])
    baseline = forms.ChoiceField(choices=Baseline.choices, initial=Baseline.RECORDED, label="Compare with")

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["candidate_version"].queryset = (
            PolicyVersion.objects.filter(repository__organization=organization)
            .select_related("repository").order_by("-committed_at", "-id")
        )
        self.fields["team"].choices = [("", "any team")] + [
            (t.slug, t.name) for t in Team.objects.filter(organization=organization)
        ]
        self.fields["agent"].choices = [("", "any agent")] + [
            (a.name, a.name) for a in Agent.objects.filter(organization=organization)
        ]

    def clean(self):
        data = super().clean()
        upload = data.get("policy_file")
        if upload:
            try:
                data["policy_yaml"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                self.add_error("policy_file", "The file is not UTF-8 text.")
        chosen = [bool(data.get("candidate_version")), bool((data.get("policy_yaml") or "").strip())]
        if sum(chosen) != 1:
            raise forms.ValidationError("Choose a policy version, or paste/upload a safety.yaml (one of them).")
        return data
