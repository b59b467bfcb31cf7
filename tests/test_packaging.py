"""The wheel must carry every package and data file the code uses."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_package_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gitstore").rglob(
        "__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {found - listed}"
    data = config["package-data"]
    assert "demo_params.yaml" in data["gitstore_cli"]
    hooks = {p.name for p in (ROOT / "hooks").iterdir() if p.is_file() and "." not in p.name}
    assert hooks == set(data["gitstore_cli.hooks"])
