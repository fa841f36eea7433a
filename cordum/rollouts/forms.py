from django import forms

from cordum.rollouts.choices import StageKind
from cordum.rollouts.models import default_stages


class RolloutPlanForm(forms.Form):
    """The plan's switches and guardrails; its stages are the StageFormSet beside it."""

    auto_start = forms.BooleanField(required=False, initial=True, label="Start automatically when a version goes live")
    auto_promote = forms.BooleanField(required=False, label="Promote automatically after each soak time")
    max_new_restriction_rate = forms.FloatField(min_value=0, max_value=1, initial=0.05,
                                                label="Halt above this share of newly denied/gated calls")
    forecast_margin = forms.FloatField(min_value=0, max_value=1, initial=0.05,
                                       label="Halt above the simulation forecast plus")
    min_calls = forms.IntegerField(min_value=1, initial=20, label="Calls needed before a guardrail can trip")


class StageForm(forms.Form):
    """One step of the plan. Canary selections (teams, agent globs, a percentage) add up stage by stage."""

    name = forms.SlugField(max_length=50)
    kind = forms.ChoiceField(choices=StageKind.choices)
    teams = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                      help_text="Canary: agents of these teams.")
    agents = forms.CharField(required=False, help_text="Canary: agent name globs, comma separated (claude-code-*)")
    percent = forms.IntegerField(required=False, min_value=0, max_value=100, initial=0,
                                 help_text="Canary: this share of the remaining agents.")
    soak_minutes = forms.IntegerField(min_value=0, initial=0, label="Soak (minutes)",
                                      help_text="Time before the next stage may start.")

    def __init__(self, *args, teams=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teams"].choices = [(t.slug, t.name) for t in teams]

    def clean(self):
        data = super().clean()
        if data.get("kind") == StageKind.CANARY and not (data.get("teams") or data.get("agents") or data.get("percent")):
            raise forms.ValidationError("A canary stage needs teams, agents or a percentage.")
        return data

    def stage(self) -> dict:
        data = self.cleaned_data
        stage = {"name": data["name"], "kind": data["kind"], "min_soak_seconds": 60 * (data.get("soak_minutes") or 0)}
        if data["kind"] == StageKind.CANARY:
            stage.update(teams=list(data.get("teams") or []), percent=data.get("percent") or 0,
                         agents=[a.strip() for a in (data.get("agents") or "").split(",") if a.strip()])
        return stage

    @staticmethod
    def initial_for(stage: dict) -> dict:
        return {"name": stage.get("name", stage["kind"]), "kind": stage["kind"], "teams": stage.get("teams", []),
                "agents": ", ".join(stage.get("agents", [])), "percent": stage.get("percent", 0),
                "soak_minutes": (stage.get("min_soak_seconds") or 0) // 60}


class BaseStageFormSet(forms.BaseFormSet):
    def clean(self):
        if any(self.errors):
            return
        stages = [f for f in self.forms if f.cleaned_data and not self._should_delete_form(f)]
        if not stages:
            raise forms.ValidationError("Give at least one stage.")
        if stages[-1].cleaned_data["kind"] != StageKind.ALL:
            raise forms.ValidationError("The last stage must enforce for all, or the version never reaches everyone.")

    def stages(self) -> list[dict]:
        return [f.stage() for f in self.forms if f.cleaned_data and not self._should_delete_form(f)]


StageFormSet = forms.formset_factory(StageForm, formset=BaseStageFormSet, extra=0, can_delete=True, max_num=10)


def default_stage_initial() -> list[dict]:
    return [StageForm.initial_for(s) for s in default_stages()]
