import json

from django import forms

from cordum.rollouts.models import default_stages


class RolloutPlanForm(forms.Form):
    stages = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "class": "mono"}),
        help_text='JSON list: {"name", "kind": shadow|canary|all, "teams": [slug], "agents": [name glob], '
                  '"percent": 0-100, "min_soak_seconds": N}. The last stage must be "all".',
    )
    auto_start = forms.BooleanField(required=False, initial=True, label="Start automatically when a version goes live")
    auto_promote = forms.BooleanField(required=False, label="Promote automatically after each soak time")
    max_new_restriction_rate = forms.FloatField(min_value=0, max_value=1, initial=0.05,
                                                label="Halt above this share of newly denied/gated calls")
    forecast_margin = forms.FloatField(min_value=0, max_value=1, initial=0.05,
                                       label="Halt above the simulation forecast plus")
    min_calls = forms.IntegerField(min_value=1, initial=20, label="Calls needed before a guardrail can trip")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.initial.get("stages"):
            self.initial["stages"] = json.dumps(default_stages(), indent=2)

    def clean_stages(self):
        try:
            return json.loads(self.cleaned_data["stages"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
