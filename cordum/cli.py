"""The `cordum` command line (`cordum ...` or `python -m cordum ...`). No Django import here.

Subcommands register through `register_subcommand(name, add_parser)`: `add_parser(subparsers)` adds
an argparse parser and sets `func=handler` (handler(args) -> exit code). Modules named in
`EXTENSION_MODULES` are imported by `main()` (if installed) and call `register_subcommand` at import
time, e.g. a `cordum/simulation/cli.py` adding `cordum simulate` without touching this file's logic:

    from cordum.cli import register_subcommand
    register_subcommand("simulate", add_simulate_parser)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

AddParser = Callable[[argparse._SubParsersAction], None]

SUBCOMMANDS: list[tuple[str, AddParser]] = []
# Optional modules that register more subcommands (skipped when not present).
EXTENSION_MODULES: list[str] = ["cordum.simulation.cli"]


def register_subcommand(name: str, add_parser: AddParser) -> None:
    """Register (or replace) a top-level subcommand."""
    for i, (existing, _) in enumerate(SUBCOMMANDS):
        if existing == name:
            SUBCOMMANDS[i] = (name, add_parser)
            return
    SUBCOMMANDS.append((name, add_parser))


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


# -- cordum policy lint -----------------------------------------------------------------------
def _gates_issues(path: str) -> list:
    """A policy repository directory's cordum.yaml (its gates), validated like safety.yaml; [] when absent."""
    from cordum.policy.gates import GATES_FILENAME, MAX_GATES_BYTES, load_gates_text

    gates = Path(path) / GATES_FILENAME
    if not Path(path).is_dir() or not gates.is_file():
        return []
    raw = gates.read_bytes()[: MAX_GATES_BYTES + 1]
    return load_gates_text(raw.decode("utf-8", errors="replace"), str(gates)).errors


def _cmd_lint(args: argparse.Namespace) -> int:
    from cordum.policy import load_policy_file

    result = load_policy_file(args.path)
    gate_errors = _gates_issues(args.path)
    ok = result.ok and not gate_errors
    if args.format == "json":
        _print_json({
            "ok": ok,
            "errors": [e.to_dict() for e in [*result.errors, *gate_errors]],
            "warnings": [w.to_dict() for w in result.warnings],
        })
        return 0 if ok else 1
    for e in [*result.errors, *gate_errors]:
        print(str(e))
    for w in result.warnings:
        print(f"{w.file}:{w.line}:{w.col}: warning: {w.message}")
    if ok:
        p = result.policy
        labels = f", {len({e.label for e in p.labels})} session labels" if p.labels else ""
        pinned = sum(len(tools) for _, tools in p.tools_lock.servers) if p.tools_lock else 0
        pins = f", {pinned} tools pinned in tools.lock (on_tool_drift: {p.on_tool_drift})" if p.tools_lock else ""
        print(f"OK: {len(p.rules)} rules, {len(p.tools)} tool map entries{labels}, default {p.defaults.decision}{pins}",
              file=sys.stderr)
        return 0
    print(f"{len(result.errors) + len(gate_errors)} error(s)", file=sys.stderr)
    return 1


# -- cordum policy coverage -------------------------------------------------------------------
def _cmd_coverage(args: argparse.Namespace) -> int:
    from cordum.policy import compile_policy, load_policy_file
    from cordum.policy.clients import CLIENT_TOOLS, tools_from_transcript, uncovered_tools

    result = load_policy_file(args.path)
    if not result.ok:
        for e in result.errors:
            print(str(e), file=sys.stderr)
        return 2
    if args.tools_from:
        try:
            with open(args.tools_from, encoding="utf-8") as fh:
                tools = tools_from_transcript(fh.read())
        except (OSError, ValueError) as exc:
            print(f"cannot read the client's tools from {args.tools_from}: {exc}", file=sys.stderr)
            return 2
    else:
        tools = list(CLIENT_TOOLS[args.client])
    missing = uncovered_tools(compile_policy(result.policy, "coverage"), tools)
    if args.format == "json":
        _print_json({"client": args.client, "tools": tools, "unmapped": missing})
    else:
        for tool in missing:
            print(f"unmapped: {tool} (the {args.client} hook would ask about every call; add it to the tool map)")
        print(f"{len(tools) - len(missing)} of {len(tools)} {args.client} tools are in the tool map", file=sys.stderr)
    return 1 if missing else 0


# -- cordum policy explain --------------------------------------------------------------------
def _read_call_arg(raw: str) -> object:
    if raw == "-":
        raw = sys.stdin.read()
    elif raw.startswith("@"):
        raw = Path(raw[1:]).read_text(encoding="utf-8")
    return json.loads(raw)


def _cmd_explain(args: argparse.Namespace) -> int:
    from cordum.policy import Call, compile_policy, load_policy_file, local_version

    result = load_policy_file(args.policy)
    if not result.ok:
        for e in result.errors:
            print(str(e), file=sys.stderr)
        return 1
    try:
        call = Call.from_dict(_read_call_arg(args.call))
    except (ValueError, OSError) as exc:
        print(f"cordum policy explain: invalid --call: {exc}", file=sys.stderr)
        return 2
    session = dict.fromkeys(args.after or (), {}) or None  # labels earlier calls of the session set
    decision = compile_policy(result.policy, args.version or local_version(args.policy)).evaluate(call, session)
    _print_json(decision.to_dict())
    return 0


# -- cordum policy test -----------------------------------------------------------------------
def _cmd_test(args: argparse.Namespace) -> int:
    from cordum.policy.testing import run_repo_tests

    report = run_repo_tests(args.repo)
    if args.format == "json":
        _print_json(report.to_dict())
        return 0 if report.ok else 1
    if not report.policy.ok:
        for e in report.policy.errors:
            print(str(e))
        print("policy is invalid; no cases were run")
        return 1
    for e in report.errors:
        print(str(e))
    for r in report.results:
        rel = os.path.relpath(r.file)
        if r.passed:
            if args.verbose:
                print(f"PASS {rel}:{r.line} {r.name}")
        else:
            print(f"FAIL {rel}:{r.line} {r.name}")
            for p in r.problems:
                print(f"     {p}")
            d = r.decision or {}
            print(f"     (topic {d.get('topic')}, matched {d.get('matched')}, reason: {d.get('reason')})")
    if report.uncovered_rules:
        print(f"note: rules without a test case: {', '.join(report.uncovered_rules)}")
    if not report.results:
        print("no test cases found (add tests/*.yaml)")
    print(f"{report.passed} passed, {report.failed} failed" + (f", {len(report.errors)} invalid" if report.errors else ""))
    return 0 if report.ok else 1


# -- cordum policy diff -----------------------------------------------------------------------
def _calls_from(path: str) -> list:
    """Calls from a .jsonl file (one call per line) or a tests/*.yaml file.

    A line of an evidence export (it has `record_type`) is a recorded call: outcome records are skipped, and
    the recorded `topic`/`risk_tags` are dropped so each policy's own tool map classifies the call (as
    `cordum simulate` does); otherwise a changed tool map could never move a recorded call.
    """
    from cordum.policy.testing import load_cases

    if path.endswith((".yaml", ".yml")):
        cases, errors = load_cases(path)
        if errors:
            raise ValueError("; ".join(str(e) for e in errors))
        return [(str(c.get("name") or f"line {line}"), c["call"]) for line, c in cases if "call" in c]  # result cases have no call
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    call = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: {exc}") from exc
                if isinstance(call, dict) and "record_type" in call:
                    if call["record_type"] != "decision":
                        continue
                    call = {k: v for k, v in call.items() if k not in ("topic", "risk_tags")}
                out.append((f"line {n}", call))
    return out


def _cmd_diff(args: argparse.Namespace) -> int:
    from cordum.policy import Call, diff_policies, load_policy_file
    from cordum.policy.testing import repo_test_files

    old, new = load_policy_file(args.old), load_policy_file(args.new)
    bad = [e for r in (old, new) for e in r.errors]
    if bad:
        for e in bad:
            print(str(e), file=sys.stderr)
        return 1
    calls = []
    try:
        sources = list(args.calls or [])
        if not sources:  # default: the test cases of both repositories
            for p in (args.old, args.new):
                if os.path.isdir(p):
                    sources.extend(repo_test_files(p))
        seen = set()
        for src in sources:
            for label, c in _calls_from(src):
                key = json.dumps(c, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    calls.append((label, Call.from_dict(c)))
    except (OSError, ValueError) as exc:
        print(f"cordum policy diff: {exc}", file=sys.stderr)
        return 2
    d = diff_policies(old.policy, new.policy, calls)
    if args.format == "json":
        _print_json(d.to_dict())
    else:
        sys.stdout.write(d.to_text())
    return 1 if (args.exit_code and not d.empty) else 0


# -- cordum init-repo -------------------------------------------------------------------------
def template_dir() -> Path:
    env = os.environ.get("CORDUM_TEMPLATE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "policies_repo_template"


def _cmd_init_repo(args: argparse.Namespace) -> int:
    src = template_dir()
    dst = Path(args.dir)
    if not (src / "safety.yaml").is_file():
        print(f"cordum init-repo: template not found at {src} (set CORDUM_TEMPLATE_DIR)", file=sys.stderr)
        return 1
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        print(f"cordum init-repo: {dst} exists and is not empty; refusing to overwrite", file=sys.stderr)
        return 1
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    print(f"Created a policy repository in {dst}")
    print(f"Next: cd {dst} && git init && cordum policy lint . && cordum policy test .")
    return 0


def _add_policy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="lint, explain, test and diff safety.yaml policies")
    psub = p.add_subparsers(dest="policy_command", metavar="COMMAND")
    psub.required = True

    lint = psub.add_parser("lint", help="validate a policy; exit 1 if invalid")
    lint.add_argument("path", help="safety.yaml, or a policy repository directory")
    _add_format(lint)
    lint.set_defaults(func=_cmd_lint)

    ex = psub.add_parser("explain", help="decide one call and print the decision as JSON")
    ex.add_argument("--policy", required=True, help="safety.yaml or a repository directory")
    ex.add_argument("--call", required=True, help="call JSON, @file.json, or - for stdin")
    ex.add_argument("--version", default="", help="policy version to report (default: local:<file>@<sha256[:7]>)")
    ex.add_argument("--after", action="append", metavar="LABEL",
                    help="decide the call as if an earlier call of its session had set this session label "
                         "(repeatable; for rules with match.after)")
    ex.set_defaults(func=_cmd_explain)

    t = psub.add_parser("test", help="run the repository's tests/*.yaml cases; exit 1 on any failure")
    t.add_argument("repo", help="policy repository directory (with safety.yaml and tests/)")
    t.add_argument("-v", "--verbose", action="store_true", help="also list passing cases")
    _add_format(t)
    t.set_defaults(func=_cmd_test)

    cov = psub.add_parser("coverage", help="list what an agent client exposes that the tool map misses; exit 1 if any")
    cov.add_argument("path", help="safety.yaml or a policy repository directory")
    cov.add_argument("--client", choices=["claude-code", "cursor"], default="claude-code")
    cov.add_argument("--tools-from", help="the client's own list: a `claude -p --output-format stream-json "
                     "--verbose` transcript, or a JSON list of tool names (default: the pinned version's list)")
    _add_format(cov)
    cov.set_defaults(func=_cmd_coverage)

    from cordum.sidecar.locking import add_lock_parser

    add_lock_parser(psub)

    d = psub.add_parser("diff", help="semantic diff of two policies and the decisions that move")
    d.add_argument("old")
    d.add_argument("new")
    d.add_argument("--calls", action="append", help="calls to replay (.jsonl or tests .yaml); repeatable. "
                   "Default: the tests/*.yaml cases of both repositories")
    d.add_argument("--exit-code", action="store_true", help="exit 1 when anything differs")
    _add_format(d)
    d.set_defaults(func=_cmd_diff)

    from cordum.simulation.remote import add_check_parser

    add_check_parser(psub)


def _add_init_repo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init-repo", help="create a policy repository from the template")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_init_repo)


register_subcommand("policy", _add_policy)
register_subcommand("init-repo", _add_init_repo)


def build_parser() -> argparse.ArgumentParser:
    for mod in EXTENSION_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod.startswith(exc.name):
                raise
    parser = argparse.ArgumentParser(prog="cordum", description="Cordum: governance for coding agents at the MCP layer.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _name, add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
