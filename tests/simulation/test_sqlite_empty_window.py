"""On SQLite (the embedded demo), a simulation whose window holds no recorded call completes with an empty report.

It used to fail with `OperationalError: near "SET"` (PostgreSQL-only session settings) for a policy with limits,
e.g. a team with no recorded call. Run in a subprocess on a fresh SQLite database, as `make demo` runs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

SCRIPT = """
import json
from pathlib import Path
from cordum.accounts.models import Organization, Team
from cordum.simulation import services
org = Organization.objects.create(name="Acme", slug="acme")
Team.objects.create(organization=org, name="Data", slug="data")  # a team with no recorded call
policy = (Path("policies_repo_template") / "safety.yaml").read_text()
sim = services.simulation_create(organization=org, user=None, enqueue=False, policy_yaml=policy, days=7,
                                 team="data")
sim = services.simulation_run(simulation=sim)
print(json.dumps({"status": sim.status, "error": sim.error,
                  "total": (sim.report or {}).get("summary", {}).get("total_calls")}))
"""


def test_an_empty_window_simulates_on_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", CORDUM_STATE_DIR=str(tmp_path))
    base = Path(settings.BASE_DIR)
    manage = [sys.executable, str(base / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=base, env=env, check=True, timeout=300)
    out = subprocess.run([*manage, "shell", "-v0", "-c", SCRIPT], cwd=base, env=env, check=True, timeout=300,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"status": "completed", "error": "", "total": 0}
