from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "cordum.policies"
    label = "policies"
