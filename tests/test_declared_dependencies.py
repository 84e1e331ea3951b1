"""pyproject.toml declares every distribution the product's code imports (torch on purpose excepted)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lgemri", "cardiac_mi", "simulator", "gan", "apps")
FIRST_PARTY = {"lgemri", "cardiac_mi", "simulator", "gan", "lib"}
# never declared: installing the package must not pull another torch (pyproject.toml says why);
# torchvision comes with monailabel and is never imported by the product
UNDECLARED = {"torch"}


def _imported_modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] for r in requirements}
    return {name.lower().replace("_", "-") for name in names}


def test_every_imported_distribution_is_declared():
    distributions = packages_distributions()
    declared = _declared()
    missing = []
    for module, where in sorted(_imported_modules().items()):
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        if module in UNDECLARED:
            continue
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} ({', '.join(sorted(names))}; imported by {where})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)
