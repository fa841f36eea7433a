"""sidecar.yaml `upload:` tunes the uploader's batching and backoff; `status` shows how old the backlog is."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from cordum.sidecar.config import ConfigError, config_from_dict
from cordum.sidecar.runtime import build_services
from cordum.sidecar.spool import Spool

from .conftest import PYTHON, sidecar_env, write_config


def test_upload_batching_and_backoff_come_from_sidecar_yaml(tmp_path, monkeypatch):
    import asyncio

    monkeypatch.setenv("CORDUM_AGENT_TOKEN", "cdm_agent_t")
    cfg = config_from_dict({"control_plane": "http://127.0.0.1:9", "spool": str(tmp_path / "s.db"),
                            "upload": {"batch_size": 40, "linger_seconds": 0.4, "interval_seconds": 2,
                                       "max_backoff_seconds": 300}})

    async def build():
        svc = await build_services(cfg, background=False)
        uploader = svc.uploader
        await svc.http.aclose()
        svc.spool.close()
        return uploader

    uploader = asyncio.run(build())
    assert (uploader.batch_size, uploader.linger, uploader.interval, uploader.max_backoff) == (40, 0.4, 2, 300)


def test_upload_defaults_are_the_documented_ones():
    upload = config_from_dict({}).upload
    assert (upload.batch_size, upload.linger_seconds, upload.interval_seconds, upload.max_backoff_seconds) == (
        500, 0.05, 1.0, 60.0)


@pytest.mark.parametrize(("section", "field"), [
    ({"batch_size": 0}, "upload.batch_size"), ({"batch_size": 6000}, "upload.batch_size"),
    ({"linger_seconds": -1}, "upload.linger_seconds"), ({"linger_seconds": "soon"}, "upload.linger_seconds"),
    ({"max_backoff_seconds": 0}, "upload.max_backoff_seconds"), ({"flush": 1}, "upload:"),
])
def test_a_bad_upload_setting_is_refused_naming_the_field(section, field):
    with pytest.raises(ConfigError, match=field):
        config_from_dict({"upload": section})


def test_status_shows_the_age_of_the_oldest_unsent_record(tmp_path):
    spool = Spool(tmp_path / "s.db")
    old = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    spool.add({"record_type": "decision", "decision_id": "d-old", "timestamp": old})
    spool.add({"record_type": "decision", "decision_id": "d-new",
               "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    spool.close()
    config = write_config(tmp_path / "sidecar.yaml", control_plane="http://127.0.0.1:9", spool=str(tmp_path / "s.db"))
    out = subprocess.run([PYTHON, "-m", "cordum.sidecar", "status", "--config", str(config)], capture_output=True,
                         env=sidecar_env(), check=True)
    report = json.loads(out.stdout)
    assert report["spool_depth"] == 2 and report["backlog_oldest_at"] == old
    assert 600 <= report["backlog_age_seconds"] < 3600


def test_status_of_an_empty_spool_has_no_backlog(tmp_path):
    config = write_config(tmp_path / "sidecar.yaml", control_plane="http://127.0.0.1:9", spool=str(tmp_path / "s.db"))
    out = subprocess.run([PYTHON, "-m", "cordum.sidecar", "status", "--config", str(config)], capture_output=True,
                         env=sidecar_env(), check=True)
    report = json.loads(out.stdout)
    assert (report["backlog_oldest_at"], report["backlog_age_seconds"]) == (None, 0)
