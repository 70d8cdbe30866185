"""The demo steps (prunequant.demo) run end to end on tiny schedules and write what they promise."""
import json

import pytest
import torch

from prunequant.demo import DEMO_STEPS, DemoContext, run_demo, step_function

torch.set_num_threads(1)


@pytest.fixture
def ctx(tmp_path, make_cnn):
    c = DemoContext(out=tmp_path, seed=0)
    c.model, c.accuracy = make_cnn(0).eval(), 0.1  # untrained: the steps' plumbing, not their accuracy
    return c


def test_every_step_resolves():
    assert set(DEMO_STEPS) >= {"baseline", "analytic", "mac-budget", "quantize", "joint", "glucose"}
    for name in DEMO_STEPS:
        assert callable(step_function(name))
    with pytest.raises(ValueError, match="unknown demo step"):
        run_demo("unused", steps=["nope"])


def test_method_steps_write_their_files(ctx, monkeypatch, capsys):
    from prunequant.demo import analytic, joint, mac_budget, pwlq

    analytic.run(ctx, sparsity=0.5, epochs=1, finetune_epochs=1)
    mac_budget.run(ctx, mac_reduction=0.3, rounds=1, epochs=1)
    pwlq.run(ctx)
    monkeypatch.setattr(joint, "EPOCHS", 1)
    monkeypatch.setattr(joint, "FINETUNE", 1)
    joint.run(ctx)
    for f in ("analytic_report.json", "analytic_pruning.png", "digits_cnn_analytic.safetensors",
              "mac_budget_report.json", "mac_budget.png", "quantize.json", "quantize_weights.png",
              "joint_report.json", "joint_history.png", "joint.json"):
        assert (ctx.out / f).stat().st_size > 0, f
    assert set(ctx.results) == {"analytic", "mac-budget", "quantize", "joint"}
    assert abs(ctx.results["analytic"]["sparsity"] - 0.5) < 0.01
    summary = json.loads((ctx.out / "quantize.json").read_text())["summary"]
    assert {"uniform_w4a8", "pwlq_w4a8", "log2_w4a8", "pwlq_w3a8"} <= set(summary)
    printed = capsys.readouterr().out
    assert "== PWLQ post-training quantization" in printed and "features.0" in printed
