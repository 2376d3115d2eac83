"""The domain package must be usable without Prefect."""

import pkgutil
import subprocess
import sys

import pytest

import ovro_ingest

pytestmark = pytest.mark.orchestration


def test_importing_every_domain_module_does_not_import_prefect():
    modules = [m.name for m in pkgutil.iter_modules(ovro_ingest.__path__, "ovro_ingest.")]
    assert "ovro_ingest.store" in modules
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in modules)
        + "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        + "print(loaded[:5]); sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"domain modules import Prefect: {result.stdout}{result.stderr}"
