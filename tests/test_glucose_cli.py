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
    assert res.exit_code == 1 and "train.csv" in res.output
    (tmp_path / "x.safetensors").write_bytes(b"not a model")
    res = run("evaluate", tmp_path / "x.safetensors", "--data", tmp_path / "d")
    assert res.exit_code == 1 and "x.safetensors" in res.output
