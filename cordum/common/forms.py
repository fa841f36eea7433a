"""Form helpers shared by the apps' HTML forms."""

from django import forms


class FilterForm(forms.Form):
    """A filter bar whose fields render without visible labels: each widget is named for screen readers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            label = field.label or field.widget.attrs.get("placeholder") or name.replace("_", " ")
            field.widget.attrs.setdefault("aria-label", str(label))

    @classmethod
    def parse(cls, data) -> dict:
        """Cleaned, non-empty filters from a QueryDict/dict; an invalid value raises CordumError naming the field
        (the API answers 400, never a database error)."""
        from cordum.common.errors import CordumError

        form = cls({k: data.get(k) for k in cls.base_fields if data.get(k) not in (None, "")})
        if not form.is_valid():
            field, errors = next(iter(form.errors.items()))
            raise CordumError(f"Invalid input: {field}: {errors[0]}", {"field": field})
        return {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
