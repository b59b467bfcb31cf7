"""Code identity (issue 13): a result's version changes exactly when the code it depends on
changes. Real code repositories (the git binary), components defined in their modules and run
in subprocesses, as a user's scripts would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git
from typer.testing import CliRunner

from gitstore import GitDataStore
from gitstore.codeid import blob_id
from gitstore_cli.main import app

runner = CliRunner()

HELPER = "def scale(x):\n    return x * {factor}\n"
UTIL = "OFFSET = {offset}\n"
MODEL = '''import json
import os

import numpy

from helper import scale
from pkg import tools


class Model:
    def __init__(self, x):
        self.parameters = {"x": x}
        self.input = None

    def compute(self):
        return tools.shift(scale(self.parameters["x"]))


class DataModel:
    depends_on = ["data/table.csv"]

    def __init__(self, x):
        self.parameters = {"x": x}
        self.input = None

    def compute(self):
        with open(os.path.join(os.path.dirname(__file__), "data", "table.csv")) as f:
            return len(f.read()) + self.parameters["x"]
'''
TOOLS = "from .util import OFFSET\n\n\ndef shift(v):\n    return v + OFFSET\n"

RUN = '''
import json, sys
sys.path.insert(0, ".")
import model
from gitstore import GitDataStore
store = GitDataStore(".gitstore")
out = []
for name, x in json.loads(sys.argv[1]):
    c = getattr(model, name)(x)
    got = store.retrieve(c, "result")
    if got is None:
        got = c.compute()
        store.store(c, "result", got)
        out.append(["miss", got])
    else:
        out.append(["hit", got])
print(json.dumps(out))
'''


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")
    e.pop("GITSTORE_DIR", None)
    e.pop("GITSTORE_VERSION_POLICY", None)
    return e


def sh(*args: str, cwd: Path, extra: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env={**env(), **(extra or {})},
                          capture_output=True, text=True, check=True)


def run(project: Path, *calls: tuple[str, int], extra: dict[str, str] | None = None
        ) -> list[str]:
    """Compute-or-retrieve in a fresh process; ``hit``/``miss`` per call."""
    out = sh(sys.executable, "-c", RUN, json.dumps(calls), cwd=project, extra=extra)
    return [what for what, _value in json.loads(out.stdout)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    (repo / "pkg").mkdir(parents=True)
    (repo / "data").mkdir()
    git("init", "-q", "-b", "main", str(repo))
    (repo / "helper.py").write_text(HELPER.format(factor=2))
    (repo / "model.py").write_text(MODEL)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "tools.py").write_text(TOOLS)
    (repo / "pkg" / "util.py").write_text(UTIL.format(offset=1))
    (repo / "pkg" / "unused.py").write_text("X = 1\n")
    (repo / "data" / "table.csv").write_text("a,b\n1,2\n")
    (repo / "README.md").write_text("# project\n")
    (repo / ".gitignore").write_text(".gitstore/\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "model", cwd=repo)
    return repo


def test_unrelated_commit_keeps_every_hit(project: Path) -> None:
    assert run(project, ("Model", 1), ("DataModel", 1)) == ["miss", "miss"]
    (project / "README.md").write_text("# project\n\nmore words\n")
    (project / "pkg" / "unused.py").write_text("X = 2\n")  # in the package, not imported
    git("commit", "-qam", "docs only", cwd=project)
    assert run(project, ("Model", 1), ("DataModel", 1)) == ["hit", "hit"]


def test_uncommitted_helper_edit_misses_and_revert_hits(project: Path) -> None:
    assert run(project, ("Model", 1)) == ["miss"]
    assert run(project, ("Model", 1)) == ["hit"]
    (project / "helper.py").write_text(HELPER.format(factor=3))  # uncommitted
    assert run(project, ("Model", 1)) == ["miss"]
    (project / "pkg" / "util.py").write_text(UTIL.format(offset=5))  # transitive, relative
    assert run(project, ("Model", 1)) == ["miss"]
    git("checkout", "--", "helper.py", "pkg/util.py", cwd=project)
    assert run(project, ("Model", 1)) == ["hit"]


def test_declared_data_file_change_misses(project: Path) -> None:
    assert run(project, ("DataModel", 1), ("Model", 1)) == ["miss", "miss"]
    (project / "data" / "table.csv").write_text("a,b\n1,2\n3,4\n")
    assert run(project, ("DataModel", 1), ("Model", 1)) == ["miss", "hit"]


def test_provenance_recorded_in_component_yaml_and_commit(project: Path) -> None:
    (project / "helper.py").write_text(HELPER.format(factor=7))  # dirty: counted anyway
    run(project, ("Model", 1))
    head = git("rev-parse", "HEAD", cwd=project).strip()
    with GitDataStore(project / ".gitstore") as store:
        (entry,) = store.entries()
        code = entry.component["code"]
        assert code["head"] == head
        files = code["files"]
        assert sorted(files) == ["helper.py", "model.py", "pkg/__init__.py", "pkg/tools.py",
                                 "pkg/util.py"]  # no numpy, json, os, gitstore; no unused.py
        assert files["helper.py"] == blob_id((project / "helper.py").read_bytes())
        assert files["model.py"] == git("hash-object", "model.py", cwd=project).strip()
        assert entry.version.startswith("code-")
        (ref,) = [v for v in store.versions()]
    message = git("--git-dir", str(project / ".gitstore"), "log", "-1", "--format=%B",
                  f"refs/gitstore/versions/{ref}")
    assert head in message and files["helper.py"] in message and "pkg/util.py" in message


def test_commit_policy_still_available(project: Path) -> None:
    policy = {"GITSTORE_VERSION_POLICY": "commit"}
    assert run(project, ("Model", 1), extra=policy) == ["miss"]
    assert run(project, ("Model", 1), extra=policy) == ["hit"]
    (project / "README.md").write_text("changed\n")
    git("commit", "-qam", "docs", cwd=project)
    assert run(project, ("Model", 1), extra=policy) == ["miss"]  # any commit invalidates
    head = git("rev-parse", "HEAD", cwd=project).strip()
    with GitDataStore(project / ".gitstore") as store:
        assert head in store.versions()
        # commit-versioned results still check out by commit id
        assert [e.version for e in store.checkout("HEAD", code_repo=project)] == [head]


def test_checkout_by_content(project: Path, tmp_path: Path) -> None:
    first = git("rev-parse", "HEAD", cwd=project).strip()
    run(project, ("Model", 1))                  # computed at the first commit
    (project / "helper.py").write_text(HELPER.format(factor=3))
    run(project, ("Model", 2))                  # computed BEFORE the commit that holds it
    git("commit", "-qam", "helper x3", cwd=project)
    (project / "README.md").write_text("docs\n")
    git("commit", "-qam", "docs", cwd=project)  # same code as HEAD~1
    with GitDataStore(project / ".gitstore") as store:
        def xs(rev: str) -> list[int]:
            return sorted(e.component["parameters"]["x"]
                          for e in store.checkout(rev, code_repo=project))
        assert xs("HEAD") == [2] and xs("HEAD~1") == [2]
        assert xs(first) == [1] and xs("HEAD~2") == [1]
    # the code's working tree was never imported nor touched: still clean
    assert git("status", "--porcelain", cwd=project) == ""
    listed = runner.invoke(app, ["--store", str(project / ".gitstore"), "ls", "--rev",
                                 "HEAD~2", "--code-repo", str(project), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["type"] for row in json.loads(listed.stdout)] == ["model.Model"]
    assert len(json.loads(runner.invoke(app, ["--store", str(project / ".gitstore"), "ls",
                                              "--json"]).stdout)) == 2


def test_explain_names_the_changed_file(project: Path) -> None:
    run(project, ("Model", 1))
    old = blob_id((project / "pkg" / "util.py").read_bytes())
    (project / "pkg" / "util.py").write_text(UTIL.format(offset=9))
    new = blob_id((project / "pkg" / "util.py").read_bytes())
    script = ("import sys; sys.path.insert(0, '.'); import model; "
              "from gitstore import GitDataStore; "
              "print(GitDataStore('.gitstore').explain(model.Model(1)))")
    text = sh(sys.executable, "-c", script, cwd=project).stdout
    assert f"code pkg/util.py: stored {old[:12]}, yours {new[:12]}" in text
    assert "helper.py" not in text  # only the file that changed is named


def test_run_commit_push_shares_with_a_clone(project: Path, tmp_path: Path) -> None:
    """The README's workflow, in its order: run, commit, push; clone, checkout, hit."""
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(origin))
    git("remote", "add", "origin", str(origin), cwd=project)
    assert runner.invoke(app, ["hooks", "install", "--code-repo", str(project)]).exit_code == 0
    (project / "helper.py").write_text(HELPER.format(factor=4))  # a new model, uncommitted
    assert run(project, ("Model", 1), ("Model", 2)) == ["miss", "miss"]
    git("commit", "-qam", "new model", cwd=project)
    pushed = sh("git", "push", "-q", "origin", "main", cwd=project)
    assert "pushed results of 1 version(s)" in pushed.stderr
    clone = tmp_path / "colleague"
    git("clone", "-q", str(origin), str(clone))
    git("config", "gitstore.fetch", "true", cwd=clone)
    store = ["--store", str(clone / ".gitstore")]
    assert runner.invoke(app, [*store, "init"]).exit_code == 0
    assert runner.invoke(app, [*store, "remote", "add", "origin", str(origin)]).exit_code == 0
    assert runner.invoke(app, ["hooks", "install", "--code-repo", str(clone)]).exit_code == 0
    git("checkout", "-q", "-b", "elsewhere", cwd=clone)
    out = sh("git", "checkout", "main", cwd=clone)
    assert "gitstore: 2 cached result(s)" in out.stderr
    assert run(clone, ("Model", 1), ("Model", 2)) == ["hit", "hit"]


def test_pull_rev_fetches_only_valid_versions(project: Path, tmp_path: Path) -> None:
    run(project, ("Model", 1))
    (project / "helper.py").write_text(HELPER.format(factor=5))
    run(project, ("Model", 1))  # a second version, not committed anywhere
    origin = tmp_path / "results.git"
    git("init", "-q", "--bare", str(origin))
    with GitDataStore(project / ".gitstore") as store:
        assert len(store.versions()) == 2
        store.push(str(origin))
    git("checkout", "--", "helper.py", cwd=project)
    other = tmp_path / "other"
    result = runner.invoke(app, ["--store", str(other), "pull", str(origin), "--rev", "HEAD",
                                 "--code-repo", str(project)])
    assert result.exit_code == 0, result.output
    with GitDataStore(other) as store:
        (version,) = store.versions()
        assert store.versions_for("HEAD", project) == [version]


def test_cli_explain_of_a_description_names_the_code_file(project: Path, tmp_path: Path
                                                          ) -> None:
    import yaml

    run(project, ("Model", 1))
    store = ["--store", str(project / ".gitstore")]
    with GitDataStore(project / ".gitstore") as s:
        (entry,) = s.entries()
    wanted = dict(entry.component)
    old = wanted["code"]["files"]["helper.py"]
    new = blob_id(HELPER.format(factor=11).encode())
    wanted["code"] = {"head": None, "files": {**wanted["code"]["files"], "helper.py": new}}
    wanted["version"] = "code-0123456789abcdef"
    path = tmp_path / "wanted.yaml"
    path.write_text(yaml.safe_dump(wanted))
    explained = runner.invoke(app, [*store, "explain", str(path)])
    assert explained.exit_code == 0, explained.output
    assert f"code helper.py: stored {old[:12]}, yours {new[:12]}" in explained.stdout


def test_bad_policy_and_missing_data_file_are_clear_errors(project: Path) -> None:
    import importlib

    from gitstore import key_of, set_version_policy
    from gitstore.errors import InvalidComponentError

    (project / "broken.py").write_text(
        "class Missing:\n    depends_on = ['data/nope.csv']\n"
        "    def __init__(self):\n        self.parameters = {}\n        self.input = None\n"
        "class Odd:\n    version_policy = 'sometimes'\n"
        "    def __init__(self):\n        self.parameters = {}\n        self.input = None\n"
        "def lazy():\n    import helper\n    return helper\n")
    sys.path.insert(0, str(project))
    try:
        broken = importlib.import_module("broken")
        with pytest.raises(InvalidComponentError, match="nope.csv") as info:
            key_of(broken.Missing())
        assert info.value.attribute == "depends_on"
        with pytest.raises(InvalidComponentError, match="version_policy"):
            key_of(broken.Odd())
        with pytest.raises(InvalidComponentError, match="version policy"):
            set_version_policy("never")
        # an import inside a function counts: helper.py is part of lazy's code
        from gitstore import code_identity

        assert "helper.py" in code_identity(broken.lazy).as_mapping()
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("broken", None)
        sys.modules.pop("helper", None)


def test_declared_folder_notices_a_new_file_in_the_same_process(project: Path) -> None:
    import importlib

    from gitstore import code_identity

    (project / "folder_model.py").write_text("class M:\n    depends_on = ['data']\n")
    sys.path.insert(0, str(project))
    try:
        module = importlib.import_module("folder_model")
        before = code_identity(module.M)
        assert "data/table.csv" in before.as_mapping()
        assert code_identity(module.M) == before  # warm: the same
        (project / "data" / "more.csv").write_text("x\n")
        after = code_identity(module.M)
        assert after.version != before.version and "data/more.csv" in after.as_mapping()
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("folder_model", None)


def test_forged_code_records_are_never_valid_for_a_revision(project: Path) -> None:
    """A component.yaml whose file list does not give its version, or that names a folder's
    tree as a file, is not matched to a revision (and breaks nothing else)."""
    from gitstore.codecs import encode_payload
    from gitstore.codeid import version_of_files

    run(project, ("Model", 1))
    real = {"model.py": git("hash-object", "model.py", cwd=project).strip()}
    folder = git("rev-parse", "HEAD:pkg", cwd=project).strip()
    forged = [("code-0000000000000000", real),                            # wrong digest
              (version_of_files({"pkg": folder}.items()), {"pkg": folder})]  # a tree, not a file
    with GitDataStore(project / ".gitstore") as store:
        (good,) = store.versions_for("HEAD", project)
        for n, (version, files) in enumerate(forged):
            key = f"k1-sha256:{n:064x}"
            description = {"key": key, "type": "forged.Model", "version": version,
                           "parameters": {}, "input": None,
                           "code": {"head": None, "files": files}}
            codec, payload = encode_payload(1, False)
            store._put(key, description, "result", codec, payload)
        assert len(store.versions()) == 3
        assert store.versions_for("HEAD", project) == [good]
        assert [e.type for e in store.checkout("HEAD", code_repo=project)] == ["model.Model"]
