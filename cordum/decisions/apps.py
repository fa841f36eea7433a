from django.apps import AppConfig


class DecisionsConfig(AppConfig):
    name = "cordum.decisions"
    label = "decisions"
