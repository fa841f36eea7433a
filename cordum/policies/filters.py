"""One filter set for policy versions, shared by the HTML list, the API and the selector."""

from django import forms

from cordum.common.forms import FilterForm

_BOOL = [("", "any"), ("true", "yes"), ("false", "no")]


class PolicyVersionFilterForm(FilterForm):
    repository = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    branch = forms.CharField(required=False, max_length=255)
    commit = forms.CharField(required=False, max_length=40)
    valid = forms.ChoiceField(required=False, choices=_BOOL)
    live = forms.ChoiceField(required=False, choices=_BOOL)
