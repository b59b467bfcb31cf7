"""Results by code revision (checkout), versions from code, and explaining misses."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from components import SimpleComponent, Typed
from conftest import git

from gitstore import GitDataStore, key_of
from gitstore._git.objects import BLOB, COMMIT, TREE, ObjectDB, object_id, serialize_tree
from gitstore.errors import CorruptEntryError, EntryNotFoundError

MODEL = '''
class Model:
    """A component without an explicit version, under the commit policy: its version is the
    code's commit (plus a digest of its dirty file)."""
    version_policy = "commit"
    def __init__(self, parameters, input=None):
        self.parameters = parameters
        self.input = input
    def compute(self):
        return [self.parameters["x"] * {factor}]
'''


@pytest.fixture
def code_repo(tmp_path: Path) -> Iterator[tuple[Path, ModuleType]]:
    repo = tmp_path / "project"
    repo.mkdir()
    git("init", "-q", str(repo))
    (repo / "revmodel.py").write_text(MODEL.format(factor=2))
    git("add", ".", cwd=repo)
    git("commit", "-qm", "model v1", cwd=repo)
    git("tag", "first", cwd=repo)
    sys.path.insert(0, str(repo))
    module = importlib.import_module("revmodel")
    yield repo, module
    sys.path.remove(str(repo))
    sys.modules.pop("revmodel", None)


def test_checkout_a_code_revision(code_repo: tuple[Path, ModuleType], tmp_path: Path) -> None:
    repo, module = code_repo
    store = GitDataStore(tmp_path / "store.git")
    first = git("rev-parse", "HEAD", cwd=repo).strip()
    for x in (1, 2):
        m = module.Model({"x": x})
        store.store(m, "result", m.compute())
        store.store(m, "array", np.arange(3) * x)
    assert store.versions() == [first]
    # a new commit of the code is a new version: old results are not served for it
    (repo / "revmodel.py").write_text(MODEL.format(factor=3))
    importlib.reload(module)
    m3 = module.Model({"x": 1})
    assert store.retrieve(m3, "result") is None
    assert store.versions() == [first]
    git("commit", "-qam", "model v2", cwd=repo)
    importlib.reload(module)
    store.store(module.Model({"x": 1}), "result", module.Model({"x": 1}).compute())
    assert len(store.versions()) == 2
    status_before = git("status", "--porcelain", cwd=repo)
    for rev in ("HEAD~1", "first", first[:8], first):
        listed = store.checkout(rev, code_repo=repo)
        assert sorted(e.component["parameters"]["x"] for e in listed) == [1, 2]
    dest = tmp_path / "out"
    store.checkout("HEAD~1", dest, code_repo=repo)
    folders = sorted((dest / "revmodel.Model").iterdir())
    assert len(folders) == 2
    for folder in folders:
        x = json.loads((folder / "result.json").read_text())[0] // 2
        assert np.load(folder / "array.npy").tolist() == [0, x, 2 * x]
        assert "type: revmodel.Model" in (folder / "component.yaml").read_text()
    assert git("status", "--porcelain", cwd=repo) == status_before  # code untouched
    assert len(store.checkout("HEAD", code_repo=repo)) == 1
    with pytest.raises(EntryNotFoundError):
        store.checkout("no-such-branch", code_repo=repo)


def test_dirty_code_is_its_own_version(code_repo: tuple[Path, ModuleType],
                                       tmp_path: Path) -> None:
    repo, module = code_repo
    store = GitDataStore(tmp_path / "s")
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "revmodel.py").write_text(MODEL.format(factor=5))
    importlib.reload(module)
    m = module.Model({"x": 1})
    store.store(m, "result", m.compute())
    (version,) = store.versions()
    assert version.startswith(head + "+dirty.")


def test_checkout_refuses_escaping_paths(tmp_path: Path) -> None:
    store = GitDataStore(tmp_path / "s")
    c = SimpleComponent({"a": 1})
    store.store(c, "x", "fine")
    # forge an entry whose attribute file is named '..' (as a hostile remote could)
    db: ObjectDB = store._db()
    ref = "refs/gitstore/versions/1.0"
    tip = store._refs.read(ref)
    assert tip is not None
    h = key_of(c).split(":")[1]
    entry_tree = db.lookup(db.commit_tree(tip), (h[:2].encode(), h[2:4].encode(), h.encode()))
    assert entry_tree is not None
    entries = dict(db.tree(entry_tree[1]))
    evil = b"evil content"
    entries[b".."] = (0o100644, object_id(BLOB, evil))
    objects = [(BLOB, evil)]
    new_root = db.edit_tree(db.commit_tree(tip), {
        (h[:2].encode(), h[2:4].encode(), h.encode()): (0o40000, object_id(TREE, serialize_tree(
            entries)))}, objects)
    objects.append((TREE, serialize_tree(entries)))
    commit = b"tree %s\nparent %s\nauthor x <x@x> 0 +0000\ncommitter x <x@x> 0 +0000\n\nevil\n" \
        % (new_root, tip)
    objects.append((COMMIT, commit))
    db.write_pack(objects)
    with store._refs.locked(ref):
        assert store._refs.compare_and_swap(ref, tip, object_id(COMMIT, commit))
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(CorruptEntryError, match="unsafe path"):
        store.checkout("1.0", dest)
    assert not (tmp_path / "dest" / "evil content").exists()
    assert sorted(p.name for p in (tmp_path / "dest").rglob("*") if p.is_file()) == []


def test_explain_hit_and_miss(tmp_path: Path) -> None:
    store = GitDataStore(tmp_path / "s")
    stim = SimpleComponent({"rate": 10.0, "seed": 1})
    pop = SimpleComponent({"n": 100, "tau": {"m": 20.0}}, input=stim)
    store.store(stim, "drive", [1.0])
    store.store(pop, "spikes", [0.5])
    hit = store.explain(pop)
    assert hit.stored and "stored" in str(hit) and hit.attributes == ["spikes"]
    miss = store.explain(SimpleComponent({"n": 100, "tau": {"m": 25.0}}, input=stim))
    assert not miss.stored
    assert miss.nearest[0][0] == key_of(pop)
    assert "parameter tau.m: stored 20.0, yours 25.0" in str(miss)
    other_version = store.explain(SimpleComponent({"n": 100, "tau": {"m": 20.0}}, input=stim,
                                                  version="2.0"))
    assert "version: stored '1.0', yours '2.0'" in str(other_version)
    upstream = store.explain(SimpleComponent({"n": 100, "tau": {"m": 20.0}},
                                             input=SimpleComponent({"rate": 12.0, "seed": 1})))
    text = str(upstream)
    assert "input 0" in text and "parameter rate: stored 10.0, yours 12.0" in text
    nothing = store.explain(Typed("never.Stored", {"a": 1}))
    assert not nothing.stored and nothing.nearest == []
    assert "nothing of type never.Stored is stored" in str(nothing)
