"""What an install ships besides modules: every package-data pattern names real files."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> Any:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_files(package: str) -> list[str]:
    """The files of ``package`` (``*``: of every package the build includes), as the
    paths a pattern is matched against: relative to the package, and bare names (a
    ``*`` pattern applies in every package directory)."""
    if package == "*":
        roots = [ROOT / name.rstrip("*") for name in _setuptools()["packages"]["find"]["include"]]
    else:
        roots = [ROOT / package.replace(".", "/")]
    files = [(root, path) for root in roots for path in root.rglob("*") if path.is_file()]
    return [path.name for _, path in files] + [
        path.relative_to(root).as_posix() for root, path in files
    ]


def test_every_package_data_pattern_matches_a_file() -> None:
    for package, patterns in _setuptools()["package-data"].items():
        names = _package_files(package)
        unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
        assert unmatched == [], f"package-data for {package!r} names no file: {unmatched}"


def test_the_migration_template_and_type_markers_ship() -> None:
    shipped = [p for patterns in _setuptools()["package-data"].values() for p in patterns]
    for needed in ("script.py.mako", "py.typed"):
        assert any(fnmatch.fnmatch(needed, pattern) for pattern in shipped), needed
