"""Generates the CLI and HTTP API reference pages at build time (mkdocs-gen-files), so they cannot drift.

The CLI pages come from the argument parsers themselves; the API page from the same OpenAPI schema that
/api/schema/ serves.
"""

import argparse
import os

import mkdocs_gen_files


def _walk(parser: argparse.ArgumentParser, depth: int = 2):
    """Yields (heading depth, parser) for a parser and each of its subcommands, depth first."""
    yield depth, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _walk(sub, depth + 1)


def _cli_page(title: str, intro: str, parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "110"
    out = [f"# {title}", "", intro, ""]
    for depth, p in _walk(parser):
        out += [f"{'#' * depth} `{p.prog}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _api_page() -> str:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cordum.settings")
    import django

    django.setup()
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    out = [
        "# HTTP API",
        "",
        f"{schema['info']['title']} {schema['info']['version']}. A running control plane serves this schema at "
        "`/api/schema/` and browsable docs at `/api/docs/`. Sidecars authenticate with their agent token, people "
        "with a session or a personal token (`Authorization: Bearer …`). Errors are "
        '`{"message": …, "extra": …}` with a 4xx status naming the field.',
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((method.upper(), path, op))
    for tag in sorted(by_tag):
        out += [f"## {tag}", "", "| method | path | what |", "|---|---|---|"]
        for method, path, op in by_tag[tag]:
            what = (op.get("summary") or op.get("description") or "").split("\n")[0].replace("|", "\\|")
            out.append(f"| {method} | `{path}` | {what} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    from cordum import cli
    from cordum.sidecar import cli as sidecar_cli

    with mkdocs_gen_files.open("reference/cli.md", "w") as f:
        f.write(_cli_page("`cordum` command line",
                          "The policy and simulation CLI (`python -m cordum` is the same). Generated from its parser.",
                          cli.build_parser()))
    with mkdocs_gen_files.open("reference/sidecar-cli.md", "w") as f:
        f.write(_cli_page("`cordum-sidecar` command line",
                          "The enforcement sidecar, its hooks and installers. Generated from its parser.",
                          sidecar_cli.build_parser()))
    with mkdocs_gen_files.open("reference/http-api.md", "w") as f:
        f.write(_api_page())


main()
