"""``import prunequant`` stays lean: torch, numpy and safetensors only, no optional dependency is loaded.

Each check runs in a fresh interpreter, since this test process has already imported everything.
"""
import json
import subprocess
import sys

import pytest

OPTIONAL = ["matplotlib", "pandas", "sklearn", "chemotools", "rich", "typer", "onnxruntime", "onnx", "scipy",
            "yaml", "PIL", "transformers"]


def _loaded(statement: str) -> list[str]:
    code = (f"import sys, json\n{statement}\n"
            f"print(json.dumps(sorted(m for m in {OPTIONAL!r} if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", [
    "import prunequant",
    "import prunequant; from prunequant import prune_, quantize_, prune_quantize_, finalize_",
    "import prunequant.viz",  # plots import matplotlib only when they draw
    "import prunequant.demo",
    "import prunequant.workflow",  # YAML, Pillow, transformers only when a recipe / image folder / HF model is read
])
def test_import_loads_no_optional_dependency(statement):
    assert _loaded(statement) == []


def test_version_and_entry_points_agree():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    import prunequant

    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert meta["version"] == prunequant.__version__
    assert meta["license"] == "Apache-2.0" and "Apache License" in (root / "LICENSE").read_text()[:200]
    assert (Path(prunequant.__file__).parent / "py.typed").exists()
    res = subprocess.run([sys.executable, "-m", "prunequant", "--version"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == f"prunequant {prunequant.__version__}"
