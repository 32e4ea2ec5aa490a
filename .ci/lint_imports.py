"""Check the import contracts of ``[tool.importlinter]`` in pyproject.toml (run by ``make lint``).

The layer folders (``profiles/``, ``features/``, ...) install as ``cip.profiles``,
``cip.features``, ... through setuptools' ``package-dir`` mapping, so on disk
``cip/`` holds only the package root and import-linter (grimp) cannot find the
subpackages by walking it. This script lays the mapping out as a tree of
symbolic links in a temporary folder (``cip/profiles -> <project>/profiles``,
...), runs ``lint-imports`` there, and exits with its status (0: every contract
kept, 1: a contract is broken or the configuration is invalid).

Usage: ``python .ci/lint_imports.py [PROJECT_DIR]`` (default: the repository
root). ``PROJECT_DIR`` must hold ``pyproject.toml`` and the mapped folders.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from pathlib import Path


def link_tree(project: Path, dest: Path) -> Path:
    """Lay the ``package-dir`` mapping of ``project`` out as symlinks under ``dest``."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    mapping: dict[str, str] = meta["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
        parts = package.split(".")
        target = dest.joinpath(*parts)
        source = (project / folder).resolve()
        if len(parts) == 1:  # the root package: a real folder, its files linked one by one
            target.mkdir(parents=True, exist_ok=True)
            for entry in source.iterdir():
                if entry.name != "__pycache__":
                    (target / entry.name).symlink_to(entry)
        else:
            target.symlink_to(source, target_is_directory=True)
    return dest


def main(argv: list[str]) -> int:
    """Run the contracts of ``argv[0]`` (a project folder) or of this repository."""
    project = Path(argv[0] if argv else Path(__file__).resolve().parent.parent).resolve()
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory(prefix="cip-lint-imports-") as tmp:
        link_tree(project, Path(tmp))
        os.chdir(tmp)  # lint-imports puts the working directory first on sys.path
        return lint_imports(
            config_filename=str(project / "pyproject.toml"), no_cache=True, no_logo=True
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
