"""The pipeline's import direction, and where numba and scapy may be imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "poolwatch"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_import_layers_contract_holds():
    """import-linter's layers contract in pyproject.toml: no module reaches back up."""
    root = SRC.parent.parent
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                         cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout


def test_only_kernels_import_numba():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "numba" in _imports(p) and p.parent.name != "kernels"]
    assert offenders == []


def test_scapy_only_in_its_engine():
    """scapy is GPL-2.0-only: it stays an optional reference engine."""
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "scapy" in _imports(p) and p.name != "scapy_engine.py"]
    assert offenders == []


def test_library_never_imports_the_api_or_the_sensor():
    """api/ and capture/ sit on top of the library: only the CLI starts them (lazily)."""
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if _imports(p) & {"poolwatch_api", "poolwatch_sensor", "fastapi"}
                 and p.name != "cli.py"]
    assert offenders == []
    sensor = SRC.parent.parent / "capture" / "poolwatch_sensor"
    assert not [p.name for p in sensor.rglob("*.py") if "poolwatch_api" in _imports(p)]


def test_a_scan_without_contacts_loads_no_contact_detectors():
    """``scan --no-contacts`` (and the library's scan_sessions) load neither the behaviour
    model and its kernels nor the TLS reader (~20 ms of start-up); with contacts both."""
    probe = ("import sys\n"
             "from poolwatch.scan import DetectionPipeline\n"
             "DetectionPipeline(contacts=False)\n"
             "print(sorted(m for m in ('poolwatch.detect.behaviour', 'poolwatch.detect.tls') "
             "if m in sys.modules))\n"
             "DetectionPipeline(contacts=True)\n"
             "print(sorted(m for m in ('poolwatch.detect.behaviour', 'poolwatch.detect.tls') "
             "if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "[]", "['poolwatch.detect.behaviour', 'poolwatch.detect.tls']"]
