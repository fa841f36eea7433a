from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "cordum.rollouts"
    label = "rollouts"
