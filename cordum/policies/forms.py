from django import forms

from cordum.policies.models import PolicyRepository


class RepositoryForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Short name, e.g. policies")
    url = forms.CharField(max_length=500, label="Remote URL or local path",
                          help_text="https://github.com/acme/policies.git, git@github.com:acme/policies.git or /srv/git/policies")
    branch = forms.CharField(max_length=200, initial="main", label="Live branch")
    policy_path = forms.CharField(max_length=300, initial="safety.yaml", label="Path of safety.yaml in the repository")
    credentials = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                  label="Access token or deploy key",
                                  help_text="Stored encrypted. Leave empty to keep the current value.")
    webhook_secret = forms.CharField(required=False, max_length=200,
                                     help_text="Generated when empty on create; leave empty on edit to keep it.")
    is_enabled = forms.BooleanField(required=False, initial=True, label="Enabled (polled and accepts webhooks)")
    forge_repository = forms.RegexField(
        regex=r"^$|^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", required=False, max_length=200,
        label="Post results to GitHub repository", help_text="owner/name: a commit status per branch or pull request "
        "head and one summary comment per pull request. Leave empty to post nothing.")
    forge_api_url = forms.URLField(required=False, initial="https://api.github.com", max_length=300,
                                   label="GitHub API URL", help_text="GitHub Enterprise: https://host/api/v3")
    forge_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False), max_length=500,
                                  label="GitHub token for posting",
                                  help_text="Needs commit statuses and pull request comments (write). Stored "
                                            "encrypted. Leave empty to keep the current value.")

    def __init__(self, *args, organization=None, instance: PolicyRepository | None = None, **kwargs):
        self.organization, self.instance = organization, instance
        super().__init__(*args, **kwargs)

    def clean_name(self):
        name = self.cleaned_data["name"]
        qs = PolicyRepository.objects.filter(organization=self.organization, name=name)
        if self.instance is not None:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise forms.ValidationError("A repository with this name already exists.")
        return name
