"""The wheels the control plane runs, served as a PEP 503 simple index at /dist/simple/.

`make dist` puts the wheel into CORDUM_DIST_DIR (default `<repo>/dist`); CI and laptops then run
`pip install --index-url <control plane>/dist/simple/ --extra-index-url https://pypi.org/simple "cordum[sidecar]"`
(the dependencies come from PyPI). No login: the wheel is the same code every agent machine runs and holds no
secret, and pip in CI has no session cookie; every link carries `#sha256=` so pip checks what it downloads.
"""

from __future__ import annotations

import hashlib
import re
from html import escape
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

CONTENT_TYPE = "text/html; charset=utf-8"


def _normalize(name: str) -> str:
    """PEP 503 project-name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheels() -> dict[str, list[Path]]:
    """Distribution files by normalised project name (the wheel's name before its first '-')."""
    root = Path(settings.CORDUM_DIST_DIR)
    out: dict[str, list[Path]] = {}
    for f in sorted(root.glob("*.whl")) + sorted(root.glob("*.tar.gz")) if root.is_dir() else []:
        out.setdefault(_normalize(f.name.split("-", 1)[0]), []).append(f)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _page(title: str, links: list[tuple[str, str]]) -> HttpResponse:
    body = "".join(f'<a href="{escape(href)}">{escape(text)}</a><br>\n' for href, text in links)
    return HttpResponse(f"<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.0\">"
                        f"<title>{escape(title)}</title></head><body>\n{body}</body></html>\n",
                        content_type=CONTENT_TYPE)


@require_GET
def simple_root(request: HttpRequest) -> HttpResponse:
    return _page("Cordum simple index", [(f"{name}/", name) for name in _wheels()])


@require_GET
def simple_project(request: HttpRequest, project: str) -> HttpResponse:
    files = _wheels().get(_normalize(project))
    if not files:
        raise Http404(f"no distribution named {project!r} on this control plane")
    return _page(f"Links for {project}", [(f"../../files/{f.name}#sha256={_sha256(f)}", f.name) for f in files])


@require_GET
def dist_file(request: HttpRequest, filename: str) -> FileResponse:
    for files in _wheels().values():
        for f in files:
            if f.name == filename:
                return FileResponse(f.open("rb"), as_attachment=True, filename=f.name)
    raise Http404(f"no file named {filename!r} on this control plane")
