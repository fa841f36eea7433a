"""CORDUM_PGBOUNCER=1 makes the connection settings safe for PgBouncer's transaction pooling."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _database_settings(**env) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings; "
            "d = settings.DATABASES['default']; print(json.dumps({'cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', "
            "False), 'prepare': d.get('OPTIONS', {}).get('prepare_threshold', 'default')}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "cordum.settings",
                               "DATABASE_URL": "postgres://u@db:6432/cordum", **env})
    return json.loads(done.stdout)


def test_pgbouncer_mode_turns_off_server_side_cursors_and_prepared_statements():
    assert _database_settings(CORDUM_PGBOUNCER="1") == {"cursors": True, "prepare": None}
    assert _database_settings() == {"cursors": False, "prepare": "default"}
