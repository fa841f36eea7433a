"""The control plane serves the wheel it runs as a PEP 503 simple index, and pip installs Cordum from it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPI = "https://pypi.org/simple"


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    """`make dist`'s command, into a temporary directory."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps",
                    "-w", str(out), str(REPO)], check=True, timeout=300)
    return out


def test_simple_index_lists_the_wheel_with_its_sha256(client, settings, wheel_dir):
    settings.CORDUM_DIST_DIR = wheel_dir
    [wheel] = wheel_dir.glob("cordum-*.whl")
    root = client.get("/dist/simple/")
    assert root.status_code == 200 and '<a href="cordum/">cordum</a>' in root.content.decode()
    page = client.get("/dist/simple/Cordum/").content.decode()  # names are normalised (PEP 503)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert f'href="../../files/{wheel.name}#sha256={digest}"' in page
    served = client.get(f"/dist/files/{wheel.name}")
    assert b"".join(served.streaming_content) == wheel.read_bytes()


def test_unknown_project_or_file_is_a_404(client, settings, wheel_dir):
    settings.CORDUM_DIST_DIR = wheel_dir
    assert client.get("/dist/simple/not-there/").status_code == 404
    assert client.get("/dist/files/../settings.py").status_code == 404
    assert client.post("/dist/simple/").status_code in (403, 405)


@pytest.mark.slow
def test_a_fresh_venv_installs_cordum_from_the_control_plane_and_lints_the_template(live_server, settings,
                                                                                      wheel_dir, tmp_path):
    settings.CORDUM_DIST_DIR = wheel_dir
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Dependencies come from PyPI (--extra-index-url), as docs/install.md says; the assert on pip's output
    # below proves cordum itself came from the control plane.
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-v", "--disable-pip-version-check",
                           "--index-url", f"{live_server.url}/dist/simple/", "--extra-index-url", PYPI,
                           "cordum[sidecar]"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{live_server.url}/dist/files/cordum-" in proc.stdout
    lint = subprocess.run([str(venv / "bin" / "cordum"), "policy", "lint", str(REPO / "policies_repo_template")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    sidecar = subprocess.run([str(venv / "bin" / "cordum-sidecar"), "--version"], capture_output=True, text=True,
                             timeout=60)
    assert sidecar.returncode == 0 and "cordum-sidecar" in sidecar.stdout
