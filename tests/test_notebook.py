"""A cached function defined in a Jupyter notebook cell, executed for real (nbclient, ipykernel):
the first run computes, a fresh kernel hits, an edited cell misses (issue 14, item 6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SETUP = """
import json, gitstore
store = gitstore.GitDataStore({store!r})
calls = []
"""

FUNCTION = """
@store.cache
def spikes(rate, n=3):
    calls.append(rate)
    return [rate * i {op} 1 for i in range(n)]
"""

RUN = """
first = spikes(2.0)
print(json.dumps({{"calls": len(calls), "value": first, "key": spikes.key(2.0),
                   "type": spikes.full_type, "version": str(spikes.version)}}))
"""


def _run(tmp_path: Path, store: Path, op: str = "+") -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP.format(store=str(store))),
                nbformat.v4.new_code_cell(FUNCTION.format(op=op)),
                nbformat.v4.new_code_cell(RUN.format())]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # the kernel runs this interpreter (the venv with gitstore), not whatever "python3" is
    client.kernel_manager_class = _manager()
    client.execute()  # a new kernel each time: a restarted kernel
    out = nb.cells[-1].outputs
    text = "".join(o.get("text", "") for o in out if o.get("output_type") == "stream")
    assert text, out
    result: dict[str, Any] = json.loads(text)
    return result


def _manager() -> Any:
    from jupyter_client.manager import KernelManager

    class ThisPython(KernelManager):  # type: ignore[misc]
        def format_kernel_cmd(self, extra_arguments: Any = None) -> list[str]:
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    return ThisPython


def test_notebook_cell_function_computes_hits_after_restart_and_misses_when_edited(
        tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = _run(tmp_path, store)
    assert first["calls"] == 1 and first["value"] == [1.0, 3.0, 5.0]
    assert first["type"] == "__main__.spikes"
    assert first["version"].startswith("cell-sha256:")
    again = _run(tmp_path, store)  # a fresh kernel, the same cell: a hit
    assert again["calls"] == 0 and again["value"] == first["value"]
    assert again["key"] == first["key"]
    edited = _run(tmp_path, store, op="-")  # the function's body changed: a miss
    assert edited["calls"] == 1 and edited["value"] == [-1.0, 1.0, 3.0]
    assert edited["key"] != first["key"] and edited["version"] != first["version"]
