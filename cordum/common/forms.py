"""Form helpers shared by the apps' HTML forms."""

from django import forms


class FilterForm(forms.Form):
    """A filter bar whose fields render without visible labels: each widget is named for screen readers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            label = field.label or field.widget.attrs.get("placeholder") or name.replace("_", " ")
            field.widget.attrs.setdefault("aria-label", str(label))
