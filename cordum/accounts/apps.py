from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "cordum.accounts"
    label = "accounts"
