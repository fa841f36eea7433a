"""Reviewers see what a held write would change: unified diffs built from the file on disk and the call."""

from __future__ import annotations

from pathlib import Path

from cordum.sidecar.diffs import write_diff

TEMPLATE_REPO = Path(__file__).resolve().parents[2] / "policies_repo_template"


def test_write_file_to_an_existing_file_diffs_against_its_content(tmp_path):
    target = tmp_path / "app.py"
    target.write_text("print('one')\n")
    args = {"path": str(target), "content": "print('two')\n"}
    diff = write_diff(tool="write_file", arguments=args, root=None)
    assert f"--- a/{target}" in diff and "-print('one')" in diff and "+print('two')" in diff


def test_a_new_file_is_all_additions_and_relative_paths_resolve_against_the_root(tmp_path):
    args = {"file_path": "new.txt", "content": "hello\n"}
    diff = write_diff(tool="Write", arguments=args, root=str(tmp_path))
    assert diff.splitlines()[-1] == "+hello"


def test_claude_code_edit_and_filesystem_edit_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("alpha\nbeta\n")
    edit = {"file_path": str(target), "old_string": "beta", "new_string": "gamma"}
    assert "+gamma" in write_diff(tool="Edit", arguments=edit, root=None)
    fs_edit = {"path": str(target), "edits": [{"oldText": "alpha", "newText": "omega"}]}
    assert "+omega" in write_diff(tool="edit_file", arguments=fs_edit, root=None)


def test_a_new_file_shows_its_full_content_even_when_the_policy_redacts_it_and_keys_stay_masked(tmp_path):
    """The demo policy redacts `content` in evidence; the reviewer still needs the diff, minus credentials."""
    args = {"path": str(tmp_path / "deploy.sh"), "content": "export AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP\necho ok\n"}
    diff = write_diff(tool="write_file", arguments=args, root=None)
    assert diff.splitlines()[-2:] == ["+export AWS_ACCESS_KEY_ID=[REDACTED: AWS Access Key]", "+echo ok"]
    assert "AKIA" not in diff


def test_no_diff_for_calls_that_are_not_writes_or_edits_that_do_not_apply(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("alpha\n")
    assert write_diff(tool="read_text_file", arguments={"path": str(target)}, root=None) == ""
    edit = {"file_path": str(target), "old_string": "zzz", "new_string": "y"}
    assert write_diff(tool="Edit", arguments=edit, root=None) == ""


def test_credentials_in_the_file_on_disk_are_masked_in_the_diff_but_code_is_not(tmp_path):
    target = tmp_path / ".env.example"
    target.write_text("AWS_SECRET=AKIAABCDEFGHIJKLMNOP\nDB_PASSWORD=hunter2\nPORT=8000\n")
    args = {"path": str(target), "content": "X=2\n"}
    diff = write_diff(tool="write_file", arguments=args, root=None)
    assert "AKIA" not in diff and "hunter2" not in diff
    assert "-AWS_SECRET=[REDACTED: AWS Access Key]" in diff and "-DB_PASSWORD=[REDACTED]" in diff and "-PORT=8000" in diff
    code = tmp_path / "auth.py"
    code.write_text("token = get_token()\n")
    edit = {"file_path": str(code), "old_string": "get_token()", "new_string": "get_token(refresh=True)"}
    assert "+token = get_token(refresh=True)" in write_diff(tool="Edit", arguments=edit, root=None)


def test_a_private_key_in_written_content_is_masked_whole_in_the_diff_naming_what_it_hides(tmp_path):
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAwJGUYZ3pGz2yLw9g\nS6ZQmnvKjL0sAbCdEf\n-----END RSA PRIVATE KEY-----\n"
    args = {"path": str(tmp_path / "id_rsa"), "content": key}
    diff = write_diff(tool="write_file", arguments=args, root=None)
    assert "MIIEowIBAAKCAQEA" not in diff and "S6ZQmnv" not in diff
    assert "+[REDACTED: Private Key]" in diff


def test_a_held_shell_command_is_shown_program_by_program_with_the_one_the_rule_is_about_marked():
    from cordum.approvals.templatetags.approvals_tags import diff_lines
    from cordum.policy import Call, compile_policy, evaluate, load_policy_file
    from cordum.sidecar.approvals import approval_request_payload
    from cordum.sidecar.diffs import shell_programs

    template = compile_policy(load_policy_file(TEMPLATE_REPO).policy)
    command = 'git add . && git commit -m "fix: a && b" | cat; git push origin main'
    held = evaluate(template, Call(server="claude-code", tool="Bash", arguments={"command": command}))
    assert held.decision == "require_approval" and held.rule == "approve-git-push"
    record = {"server": "claude-code", "tool": "Bash", "rule": held.rule}

    view = approval_request_payload(record, {}, tool="Bash", arguments={"command": command}, root="/work/repo",
                                    compiled=template)["diff"]

    assert shell_programs(command) == ["git add .", "git commit -m 'fix: a && b'", "cat", "git push origin main"]
    assert view.splitlines() == [f"$ {command}", "   1  git add .", "   2  git commit -m 'fix: a && b'", "   3  cat",
                                 ">  4  git push origin main   <- approve-git-push"]
    assert [css for css, _ in diff_lines(view)] == ["d-file", "d-ctx", "d-ctx", "d-ctx", "d-trigger"]


def test_secrets_in_a_held_shell_command_are_masked():
    from cordum.sidecar.diffs import shell_view

    view = shell_view(command="curl -H 'Authorization: Bearer abcdefghijklmnopqrstuvwx' https://x && ./deploy.sh",
                      rule="approve-shell", decide=lambda program: "approve-shell")
    assert "abcdefghijklmnopqrstuvwx" not in view and "[REDACTED: Bearer Token]" in view


def test_a_held_git_push_lists_the_commits_it_would_push(tmp_path):
    import os
    import subprocess

    from cordum.sidecar.diffs import shell_view

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}

    def git(*args, cwd=tmp_path):
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "-q", "--bare", "-b", "main", "remote.git")
    git("clone", "-q", str(tmp_path / "remote.git"), "work")
    work = tmp_path / "work"
    git("commit", "-q", "--allow-empty", "-m", "pushed already", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    for subject in ("add the payments client", "fix the retry loop"):
        git("commit", "-q", "--allow-empty", "-m", subject, cwd=work)

    view = shell_view(command="git push origin main", rule="approve-git-push", decide=lambda p: None, root=str(work))
    pushed = [line for line in view.splitlines() if line.startswith("+")]
    assert [line.split(maxsplit=2)[2] for line in pushed] == ["fix the retry loop", "add the payments client"]
    assert "pushed already" not in view
    hostile = shell_view(command="git push origin '+--output=/tmp/x'", rule=None, decide=lambda p: None, root=str(work))
    assert not [line for line in hostile.splitlines() if line.startswith("+")]
