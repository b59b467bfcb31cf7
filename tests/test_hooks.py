"""Git hooks in a code repository, driven by the real git binary, and the sharing workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git
from typer.testing import CliRunner

from gitstore_cli.main import app

MODEL = """
class Model:
    def __init__(self, parameters):
        self.parameters = parameters
        self.input = None
"""

runner = CliRunner()


def env_with_gitstore() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("GITSTORE_DIR", None)
    return env


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env_with_gitstore(), capture_output=True,
                          text=True, check=True)


def store_results(project: Path, x: int) -> None:
    """Compute-and-store in a subprocess, as a user's script in the project would."""
    script = (f"import sys; sys.path.insert(0, '.'); from model import Model; "
              f"from gitstore import GitDataStore; "
              f"GitDataStore('.gitstore').store(Model({{'x': {x}}}), 'result', {x} * 10)")
    run(sys.executable, "-c", script, cwd=project)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git("init", "-q", "-b", "main", str(repo))
    (repo / "model.py").write_text(MODEL)
    (repo / ".gitignore").write_text(".gitstore/\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "model", cwd=repo)
    return repo


def test_install_keeps_user_hooks_and_uninstall_restores(project: Path) -> None:
    hooks = project / ".git" / "hooks"
    mine = hooks / "post-checkout"
    mine.write_text("#!/bin/sh\necho user-hook-ran > \"$(git rev-parse --show-toplevel)/mark\"\n")
    mine.chmod(0o755)
    result = runner.invoke(app, ["hooks", "install", "--code-repo", str(project)])
    assert result.exit_code == 0, result.output
    assert "# gitstore hook" in mine.read_text()
    assert (hooks / "post-checkout.pre-gitstore").exists()
    store_results(project, 1)
    git("checkout", "-q", "-b", "other", cwd=project)
    out = run("git", "checkout", "main", cwd=project)
    assert (project / "mark").read_text().strip() == "user-hook-ran"  # the user's hook ran
    assert "gitstore: 1 cached result(s)" in out.stderr
    # installing twice is harmless
    assert runner.invoke(app, ["hooks", "install", "--code-repo", str(project)]).exit_code == 0
    assert runner.invoke(app, ["hooks", "uninstall", "--code-repo", str(project)]).exit_code == 0
    assert "user-hook-ran" in mine.read_text()
    assert not (hooks / "post-checkout.pre-gitstore").exists()
    assert not (hooks / "pre-push").exists()


def test_sharing_workflow_two_clones(project: Path, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(origin))
    git("remote", "add", "origin", str(origin), cwd=project)
    runner.invoke(app, ["hooks", "install", "--code-repo", str(project)])
    store_results(project, 1)
    store_results(project, 2)
    # pushing the code pushes the results (pre-push hook)
    out = run("git", "push", "-q", "origin", "main", cwd=project)
    assert "pushed results of 1 version(s)" in out.stderr
    refs = git("--git-dir", str(origin), "for-each-ref", "--format=%(refname)")
    assert "refs/gitstore/versions/" in refs
    # a colleague clones the project, installs the hooks, and asks for results on checkout
    clone = tmp_path / "colleague"
    git("clone", "-q", str(origin), str(clone))
    git("config", "gitstore.fetch", "true", cwd=clone)
    runner.invoke(app, ["--store", str(clone / ".gitstore"), "init"])
    runner.invoke(app, ["--store", str(clone / ".gitstore"), "remote", "add", "origin",
                        str(origin)])
    runner.invoke(app, ["hooks", "install", "--code-repo", str(clone)])
    git("checkout", "-q", "-b", "elsewhere", cwd=clone)
    out = run("git", "checkout", "main", cwd=clone)
    assert "gitstore: 2 cached result(s)" in out.stderr
    check = ("import sys; sys.path.insert(0, '.'); from model import Model; "
             "from gitstore import GitDataStore; "
             "print(GitDataStore('.gitstore').retrieve(Model({'x': 2}), 'result'))")
    assert run(sys.executable, "-c", check, cwd=clone).stdout.strip() == "20"  # a hit


def test_cli_remote_push_pull_checkout_explain(tmp_path: Path, project: Path) -> None:
    store_results(project, 3)
    store = str(project / ".gitstore")
    origin = tmp_path / "o.git"
    git("init", "-q", "--bare", str(origin))
    assert runner.invoke(app, ["--store", store, "remote", "add", "o", str(origin)]).exit_code == 0
    assert runner.invoke(app, ["--store", store, "remote", "ls"]).stdout.split() == ["o", str(origin)]
    assert runner.invoke(app, ["--store", store, "push", "o"]).exit_code == 0
    other = str(tmp_path / "other")
    result = runner.invoke(app, ["--store", other, "pull", str(origin)])
    assert result.exit_code == 0 and ": created" in result.stdout
    assert runner.invoke(app, ["--store", other, "fetch", str(origin)]).exit_code == 0
    listed = runner.invoke(app, ["--store", store, "checkout", "HEAD", "--code-repo",
                                 str(project)])
    assert listed.exit_code == 0 and "model.Model" in listed.stdout
    dest = tmp_path / "out"
    runner.invoke(app, ["--store", store, "checkout", "HEAD", str(dest), "--code-repo",
                        str(project)])
    assert list(dest.rglob("result.json"))
    wanted = tmp_path / "wanted.yaml"
    head = git("rev-parse", "HEAD", cwd=project).strip()
    wanted.write_text(f"type: model.Model\nversion: {head}\nparameters:\n  x: 4\n")
    explained = runner.invoke(app, ["--store", store, "explain", str(wanted)])
    assert "parameter x: stored 3, yours 4" in explained.stdout
    assert runner.invoke(app, ["--store", store, "remote", "rm", "o"]).exit_code == 0
    bad = runner.invoke(app, ["--store", store, "push", "nowhere-at-all"])
    assert bad.exit_code == 1 and "gitstore: error:" in bad.stderr
