"""``prunequant quantize``: runs on a saved model, writes report.json / weight plot / model.pq, reports errors."""
import json

import torch

from prunequant.io import save
from prunequant.models import DigitsCNN

torch.set_num_threads(1)


def test_quantize_saved_model(tmp_path, run_cli):
    torch.manual_seed(0)
    save(DigitsCNN().eval(), tmp_path / "cnn.safetensors")
    out = tmp_path / "q"
    code, _, err = run_cli("quantize", tmp_path / "cnn.safetensors", "--method", "pwlq", "--wbits", "4",
                           "--abits", "8", "--n-breakpoints", "2", "--out", out)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    info = rep["steps"][0]["result"]
    assert len(info["layers"]) == 4 and info["config"]["n_breakpoints"] == 2
    assert all(len(r["breakpoint_ratio"]) == 2 for r in info["layers"])
    assert rep["metric"]["after"] is not None and rep["metric"]["name"] == "accuracy"
    assert (out / rep["steps"][0]["plot"]).stat().st_size > 1000 and (out / "model.pq").exists()


def test_quantize_bad_arguments(tmp_path, run_cli):
    torch.manual_seed(0)
    save(DigitsCNN().eval(), tmp_path / "cnn.safetensors")
    code, _, err = run_cli("quantize", tmp_path / "cnn.safetensors", "--wbits", "1")
    assert code == 2 and "wbits" in err
    code, _, err = run_cli("quantize", tmp_path / "missing.safetensors")
    assert code == 2 and "missing.safetensors" in err and "not found" in err
