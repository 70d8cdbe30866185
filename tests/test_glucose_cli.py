"""``prunequant glucose simulate|train|evaluate|compress`` end to end on tiny settings, and its error paths."""
import json

import torch
from typer.testing import CliRunner

from prunequant.cli.main import app

torch.set_num_threads(1)


def run(*args):
    res = CliRunner().invoke(app, ["glucose", *map(str, args)])
    return res


def test_simulate_train_evaluate_compress(tmp_path):
    d, m, e, c = (tmp_path / n for n in ("data", "model", "eval", "small"))
    res = run("simulate", "--out", d, "--train", 6, "--val", 2, "--test", 2, "--days", 0.2, "--test-days", 0.2)
    assert res.exit_code == 0, res.output
    assert all((d / f).exists() for f in ("train.csv", "val.csv", "test.csv", "spectra.png", "traces.png"))
    res = run("train", "--data", d, "--out", m, "--epochs", 2, "--hidden1", 8, "--hidden2", 4, "--project", 8,
              "--window", 3)
    assert res.exit_code == 0, res.output
    metrics = json.loads((m / "metrics.json").read_text())
    assert {"lstm", "pls"} <= set(metrics["metrics"]) and metrics["meta"]["window"] == 3
    res = run("evaluate", m / "model.safetensors", "--data", d, "--out", e)
    assert res.exit_code == 0, res.output
    ev = json.loads((e / "metrics.json").read_text())
    assert ev["rmse"] == metrics["metrics"]["lstm"]["rmse"]  # the reloaded model predicts identically
    assert (e / "test_clarke.png").exists() and (e / "test_parkes.png").exists() and (e / "test_time.png").exists()
    res = run("compress", m / "model.safetensors", "--data", d, "--out", c, "--sparsity", 0.5,
              "--prune-epochs", 1, "--finetune-epochs", 1)
    assert res.exit_code == 0, res.output
    summary = json.loads((c / "summary.json").read_text())
    assert summary["size_after"]["bytes"] < summary["size_before"]["bytes"]
    res = run("evaluate", c / "model.safetensors", "--data", d, "--out", tmp_path / "eval2")
    assert res.exit_code == 0, res.output
    ev2 = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert abs(ev2["rmse"] - summary["after"]["rmse"]) < 1e-6


def test_errors_are_reported(tmp_path):
    res = run("train", "--out", tmp_path / "m")
    assert res.exit_code != 0 and "--data" in res.output
    (tmp_path / "d").mkdir()
    res = run("train", "--data", tmp_path / "d", "--out", tmp_path / "m")
    assert res.exit_code == 2 and "train.csv" in res.output
    (tmp_path / "x.safetensors").write_bytes(b"not a model")
    res = run("evaluate", tmp_path / "x.safetensors", "--data", tmp_path / "d")
    assert res.exit_code == 2 and "x.safetensors" in res.output


def _cgm_csv(path, days=8, seed=0):
    """A synthetic CGM file in the documented format: datetime,isig,glucose with 'nil' readings and a gap."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = days * 288
    t = np.datetime64("2021-03-01T00:00") + np.arange(n) * np.timedelta64(5, "m")
    g = 130 + 50 * np.sin(np.arange(n) / 40.0) + rng.normal(0, 3, n)
    sens = 0.14 * (1 + 0.1 * np.sin(np.arange(n) / 900.0))            # drifting sensor sensitivity (nA per mg/dL)
    isig = g * sens + rng.normal(0, 0.2, n)
    keep = np.ones(n, bool)
    keep[1000:1020] = False                                          # a 100-minute gap
    lines = ["datetime,isig,glucose"]
    for i in np.flatnonzero(keep):
        s = "nil" if i % 97 == 0 else f"{isig[i]:.2f}"
        lines.append(f"{str(t[i]).replace('T', ' ')}:00,{s},{g[i]:.0f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cgm_csv_train_evaluate_compress(tmp_path):
    f = _cgm_csv(tmp_path / "cgm.csv")
    m, e, c = tmp_path / "m", tmp_path / "e", tmp_path / "c"
    res = run("train", "--cgm", f, "--out", m, "--epochs", 1, "--hidden1", 8, "--hidden2", 4, "--window", 6)
    assert res.exit_code == 0, res.output
    metrics = json.loads((m / "metrics.json").read_text())
    assert {"lstm", "linear-calibration", "ridge-window"} <= set(metrics["metrics"])
    assert metrics["meta"]["source"] == "cgm" and metrics["meta"]["cgm"]["hours"] == [7.0, 12.0, 18.0, 22.0]
    assert (m / "lstm_clarke.png").exists() and (m / "lstm_parkes.png").exists() and (m / "lstm_time.png").exists()
    res = run("evaluate", m / "model.safetensors", "--cgm", f, "--out", e)
    assert res.exit_code == 0, res.output
    ev = json.loads((e / "metrics.json").read_text())
    assert abs(ev["mard"] - metrics["metrics"]["lstm"]["mard"]) < 1e-6 and ev["iso15197"] is not None
    res = run("compress", m / "model.safetensors", "--cgm", f, "--out", c, "--sparsity", 0.5, "--prune-epochs", 1,
              "--finetune-epochs", 1)
    assert res.exit_code == 0, res.output
    summary = json.loads((c / "summary.json").read_text())
    assert summary["evaluated_from_file"] and summary["size_after"]["bytes"] < summary["size_before"]["bytes"]
    assert summary["packed_pq"]["predictions_identical"] and (c / "model.pq").exists()
    res = run("evaluate", c / "model.safetensors", "--out", tmp_path / "e2")     # the CGM file comes from the model
    assert res.exit_code == 0, res.output
    assert abs(json.loads((tmp_path / "e2" / "metrics.json").read_text())["mard"] - summary["after"]["mard"]) < 1e-6
    res = run("train", "--cgm", tmp_path / "missing.csv", "--out", m)
    assert res.exit_code == 2 and "missing.csv" in res.output
