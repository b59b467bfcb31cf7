"""Lineage as a picture: ``store.graph`` and ``gitstore graph`` (issue 17)."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from components import MultiInput, SimpleComponent, Typed
from conftest import git
from typer.testing import CliRunner

from gitstore import GitDataStore, key_of
from gitstore.errors import EntryNotFoundError, GraphvizNotFoundError
from gitstore_cli.main import app

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed "
                               "(apt-get install graphviz; .ci/run installs it)")
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>x</script>"];a->b[\\N\\l'


def svg_nodes(svg: bytes) -> list[str]:
    """The text of each node drawn in an SVG from dot (every <text> of each node group)."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            out.append("\n".join("".join(t.itertext()) for t in g.iter(f"{SVG}text")))
    return out


@pytest.fixture
def diamond(tmp_path: Path) -> tuple[GitDataStore, dict[str, object]]:
    """source -> (left, right) -> merged: a diamond."""
    store = GitDataStore(tmp_path / "s.git")
    source = Typed("lab.Source", {"seed": 1, "n": 100})
    left = Typed("lab.Filter", {"cutoff": 10.0, "order": 2}, input=source)
    right = Typed("lab.Filter", {"cutoff": 20.0, "order": 2}, input=source)
    merged = MultiInput({"how": "mean"}, [left, right])
    with store.batch():
        for c, attribute in ((source, "signal"), (left, "y"), (right, "y"), (merged, "z")):
            store.store(c, attribute, [1.0, 2.0])
    return store, {"source": source, "left": left, "right": right, "merged": merged}


def test_diamond_is_drawn_once_with_sibling_parameters(
        diamond: tuple[GitDataStore, dict[str, object]]) -> None:
    store, c = diamond
    graph = store.graph(key_of(c["merged"])[:20])
    keys = {name: key_of(comp) for name, comp in c.items()}
    assert list(graph.nodes)[0] == keys["merged"]
    assert set(graph.nodes) == set(keys.values())
    assert sorted(graph.edges) == sorted([
        (keys["source"], keys["left"]), (keys["source"], keys["right"]),
        (keys["left"], keys["merged"]), (keys["right"], keys["merged"])])
    # the two filters differ only by cutoff: that is all they show; a node alone of its
    # type shows every parameter
    assert graph.nodes[keys["left"]].shown == ("cutoff",)
    assert graph.nodes[keys["source"]].shown == ("seed", "n")
    assert graph.nodes[keys["left"]].attributes == ("y",)
    dot = graph.to_dot()
    assert dot.count("->") == 4 and dot.count("lab.Source") == 1
    assert "cutoff = 10.0" in dot and "order = 2" not in dot
    # the same graph from the component and from its Entry
    assert store.graph(c["merged"]).edges == graph.edges
    assert store.graph(store.find(keys["merged"])).edges == graph.edges


@needs_dot
def test_svg_and_png_drawn_by_graphviz(diamond: tuple[GitDataStore, dict[str, object]]
                                       ) -> None:
    store, c = diamond
    graph = store.graph(c["merged"])
    svg = graph.render("svg")
    nodes = svg_nodes(svg)
    assert len(nodes) == 4 and sum("lab.Source" in n for n in nodes) == 1
    assert graph._repr_svg_() == svg.decode()
    assert graph.render("png").startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_input_drawn_as_missing(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as store:
        upstream = SimpleComponent({"a": 1})
        downstream = SimpleComponent({"b": 2}, input=upstream)
        store.store(downstream, "x", 1)  # the upstream result was never stored
        graph = store.graph(downstream)
        node = graph.nodes[key_of(upstream)]
        assert node.missing and node.problem == "not in this store"
        assert graph.edges == ((key_of(upstream), key_of(downstream)),)
        assert "dashed" in graph.to_dot() and "not in this store" in graph.to_dot()
        with pytest.raises(EntryNotFoundError):
            store.graph("0123abcd")


def test_component_not_stored_is_drawn_from_itself(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as store:
        a = SimpleComponent({"a": 1})
        store.store(a, "x", 1)
        b = SimpleComponent({"b": 2}, input=a)
        graph = store.graph(b)
        assert graph.nodes[key_of(b)].problem == "not stored (drawn from the component)"
        assert not graph.nodes[key_of(a)].missing


def git_blob(repo: Path, data: bytes) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), "hash-object", "-w", "--stdin"],
                          input=data, capture_output=True, check=True).stdout.decode().strip()


def git_tree(repo: Path, items: list[tuple[str, str, str]]) -> str:
    text = "".join(f"{mode} {'tree' if mode == '040000' else 'blob'} {sha}\t{name}\n"
                   for mode, name, sha in items)
    return subprocess.run(["git", "--git-dir", str(repo), "mktree"], input=text.encode(),
                          capture_output=True, check=True).stdout.decode().strip()


def hostile_entries(repo: Path, descriptions: dict[str, str]) -> None:
    """Version v1 of the store holds one entry per ``{hex key: component.yaml text}``; every
    key starts with ``abab`` (filed under ab/ab/), built with real git."""
    level3 = []
    for hexkey, text in descriptions.items():
        blob = git_blob(repo, text.encode())
        level3.append(("040000", hexkey, git_tree(repo, [("100644", "component.yaml", blob),
                                                         ("100644", "x.json",
                                                          git_blob(repo, b"1"))])))
    root = git_tree(repo, [("040000", "ab", git_tree(repo, [("040000", "ab",
                                                             git_tree(repo, level3))]))])
    commit = git("--git-dir", str(repo), "commit-tree", root, "-m", "hostile").strip()
    git("--git-dir", str(repo), "update-ref", "refs/gitstore/versions/v1", commit)


def yaml_of(hexkey: str, inputs: str, parameters: str = "{}") -> str:
    return (f"key: k1-sha256:{hexkey}\nkey_scheme: k1-sha256\ntype: evil.Thing\nversion: v1\n"
            f"parameters: {parameters}\ninput: {inputs}\n")


def test_hostile_store_loops_end_and_values_are_escaped(tmp_path: Path) -> None:
    repo = tmp_path / "s.git"
    GitDataStore(repo).close()
    a, b, c = ("abab" + "0" * 58 + n for n in ("01", "02", "03"))
    hostile = HOSTILE.replace("'", "''")
    hostile_entries(repo, {
        a: yaml_of(a, f"[k1-sha256:{b}, k1-sha256:{a}]", f"{{'x{hostile}': '{hostile}'}}"),
        b: yaml_of(b, f"[k1-sha256:{a}, 'k1-sha256:{c}', 7, 'not a key']"),
        c: yaml_of(c, "{a: 1}"),   # an input that is neither a key nor a list
    })
    with GitDataStore(repo, create=False) as store:
        graph = store.graph(a)
    assert set(graph.nodes) >= {f"k1-sha256:{a}", f"k1-sha256:{b}", f"k1-sha256:{c}"}
    assert (f"k1-sha256:{a}", f"k1-sha256:{a}") in graph.edges  # a loop onto itself, once
    assert graph.nodes["not a key"].missing and graph.nodes["7"].missing
    assert graph.nodes["not a key"].problem == "not a key (a malformed input reference)"
    dot = graph.to_dot()
    assert "<script>" in dot and 'a->b' in dot  # as text inside a quoted label...
    assert dot.count(" -> ") == len(graph.edges)
    if DOT is not None:  # ...which dot reads as text: no injected node, no markup
        svg = graph.render("svg")
        assert b"<script" not in svg
        nodes = svg_nodes(svg)
        assert len(nodes) == len(graph.nodes)
        assert any("<script>x</script>" in n and "\\N\\l" in n for n in nodes)


def test_truncated_at_max_nodes(tmp_path: Path) -> None:
    from gitstore.graph import lineage

    with GitDataStore(tmp_path / "s.git") as store:
        c = None
        with store.batch():
            for i in range(8):
                c = SimpleComponent({"i": i}, input=c)
                store.store(c, "x", i)
        graph = lineage(store, c, max_nodes=3)
    assert len(graph.nodes) == 3 and graph.truncated and len(graph.edges) == 2
    assert "the rest is not drawn" in graph.to_dot()


def test_missing_graphviz_is_a_typed_error(diamond: tuple[GitDataStore, dict[str, object]],
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    store, c = diamond
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    graph = store.graph(c["merged"])
    with pytest.raises(GraphvizNotFoundError, match="graphviz"):
        graph.render("png")
    assert graph._repr_svg_() is None
    assert graph.render("dot").startswith(b"digraph lineage {")


runner = CliRunner()


def test_cli_graph(diamond: tuple[GitDataStore, dict[str, object]], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    store, c = diamond
    path = str(store.path)
    key = key_of(c["merged"]).rpartition(":")[2][:10]
    done = runner.invoke(app, ["--store", path, "graph", key])
    assert done.exit_code == 0, done.output
    assert done.output.startswith("digraph lineage {") and done.output.count(" -> ") == 4
    if DOT is not None:
        done = runner.invoke(app, ["--store", path, "graph", key, "-o", str(tmp_path / "g.svg")])
        assert done.exit_code == 0, done.output
        assert len(svg_nodes((tmp_path / "g.svg").read_bytes())) == 4  # format from the suffix
        done = runner.invoke(app, ["--store", path, "graph", key, "--format", "png",
                                   "-o", str(tmp_path / "g.out")])
        assert done.exit_code == 0, done.output
        assert (tmp_path / "g.out").read_bytes().startswith(b"\x89PNG")
    done = runner.invoke(app, ["--store", path, "graph", key, "--format", "gif"])
    assert done.exit_code != 0
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    done = runner.invoke(app, ["--store", path, "graph", key, "--format", "svg"])
    assert done.exit_code == 1
    assert done.output.count("\n") == 1 and "needs Graphviz's 'dot'" in done.output
    done = runner.invoke(app, ["--store", path, "graph", "ffff0000"])
    assert done.exit_code == 1 and "no entry with a key starting" in done.output
    assert os.path.exists(path)
