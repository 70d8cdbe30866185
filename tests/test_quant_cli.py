"""``prunequant quantize``: runs on a saved model, writes result.json / weights.png / model, reports errors."""
import json

import torch
from typer.testing import CliRunner

from prunequant.cli.main import app
from prunequant.io import save
from prunequant.models import DigitsCNN

torch.set_num_threads(1)


def test_quantize_saved_model(tmp_path):
    torch.manual_seed(0)
    save(DigitsCNN().eval(), tmp_path / "cnn.safetensors")
    out = tmp_path / "q"
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "cnn.safetensors"), "--method", "pwlq", "--wbits", "4",
                                   "--abits", "8", "--n-breakpoints", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "result.json").read_text())
    assert len(info["layers"]) == 4 and info["config"]["n_breakpoints"] == 2
    assert all(len(r["breakpoint_ratio"]) == 2 for r in info["layers"])
    assert info["accuracy"]["quantized"] is not None
    assert (out / "weights.png").stat().st_size > 1000 and (out / "model.safetensors").exists()


def test_quantize_bad_arguments(tmp_path):
    torch.manual_seed(0)
    save(DigitsCNN().eval(), tmp_path / "cnn.safetensors")
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "cnn.safetensors"), "--wbits", "1"])
    assert res.exit_code == 1 and "wbits" in res.output
    res = CliRunner().invoke(app, ["quantize", str(tmp_path / "missing.safetensors")])
    assert res.exit_code == 1 and "missing.safetensors" in res.output
