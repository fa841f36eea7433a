"""Production settings refuse the development key and pass `check --deploy`."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"} | env_extra
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_production_refuses_the_development_secret_key():
    env = {"CORDUM_ENV": "production"}
    result = _manage("check", env_extra=env | {"CORDUM_SECRET_KEY": "cordum-development-secret-key-do-not-use-in-production"})
    assert result.returncode != 0
    assert "CORDUM_SECRET_KEY" in result.stderr


def test_production_settings_pass_check_deploy():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env_extra={"CORDUM_ENV": "production", "CORDUM_SECRET_KEY": "x" * 20 + "-prod-secret-" + "y" * 30,
                   "ALLOWED_HOSTS": "cordum.example.com"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_unknown_or_misspelt_environment_is_refused_instead_of_running_as_development():
    result = _manage("check", env_extra={"CORDUM_ENV": "prod"})
    assert result.returncode != 0 and "CORDUM_ENV must be 'development' or 'production'" in result.stderr
    capitalised = _manage("check", env_extra={"CORDUM_ENV": "Production",
                                              "CORDUM_SECRET_KEY": "cordum-development-secret-key-do-not-use-in-production"})
    assert capitalised.returncode != 0 and "CORDUM_SECRET_KEY" in capitalised.stderr  # read as production
