"""The package as a whole: every module imports without a deprecation warning from our own code, and
roles import only the shared ``utils`` and the core, never another role's private module."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys

import airflow_provider_juspay
from tests.helpers import REPO

PACKAGE = REPO / "airflow_provider_juspay"
ROLES = ("hooks", "operators", "sensors", "triggers", "notifications", "assets", "ui", "plugins")


def modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(airflow_provider_juspay.__path__, "airflow_provider_juspay.")
    ]


def test_every_module_imports_without_a_deprecation_warning_of_ours():
    names = modules()
    code = (
        "import importlib, warnings\n"
        "for kind in (DeprecationWarning, PendingDeprecationWarning):\n"
        "    warnings.filterwarnings('error', category=kind, module='airflow_provider_juspay')\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print('imported', {len(names)})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imported {len(names)}" in done.stdout


def test_no_role_imports_another_roles_private_module():
    for path in PACKAGE.rglob("*.py"):
        role = path.relative_to(PACKAGE).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("airflow_provider_juspay.")
            ):
                parts = node.module.split(".")
                other = parts[1]
                private = any(part.startswith("_") for part in parts[2:])
                assert not (other in ROLES and other != role and private), f"{path}: imports {node.module}"


def test_the_core_imports_no_airflow():
    core = ["fulfilment.py", "errors.py", "config.py", "client.py", "transport.py", "ratelimit.py", "sync"]
    core += ["ui/render.py", "ui/chart.py"]  # the page's HTML: testable without Airflow
    for name in core:
        for path in [PACKAGE / name] if name.endswith(".py") else (PACKAGE / name).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = (
                        [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    )
                    assert not any(n == "airflow" or n.startswith("airflow.") for n in names), (
                        f"{path}: {names}"
                    )
