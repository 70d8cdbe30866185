"""Merging per-seed benchmark results run as separate processes (benchmarks/pwlq_accuracy.py, benchmarks/joint.py)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pwlq():
    return _load("pwlq_accuracy")


@pytest.fixture(scope="module")
def joint():
    return _load("joint")


def _pwlq_file(tmp_path, name, seeds_acc: dict[int, dict], n_test=1000):
    """A pwlq_accuracy result of one model with the given per-seed accuracies {seed: {(method, wb, ab): acc}}."""
    seeds = sorted(seeds_acc)
    keys = list(seeds_acc[seeds[0]])
    rows = [{"dataset": "fashion_mnist", "model": "fashion_mobilenetv2", "method": m, "wbits": wb, "abits": ab,
             "bits_per_weight": float(wb), "accuracy": None, "seeds": seeds,
             "accuracy_per_seed": [seeds_acc[s][(m, wb, ab)] for s in seeds]} for m, wb, ab in keys]
    d = {"benchmark": "pwlq_accuracy", "quick": False, "minimal": False, "schedule": "full", "test_images": n_test,
         "calibration": "128 random train images (seeded by training seed), activations calibration='topk_median', "
                        "batch 16", "rows": rows, "seconds": 10.0, "skipped": []}
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def _accs(base: float) -> dict:
    out = {("fp32", 32, 32): base}
    for scheme, gain in (("uniform", 0.0), ("pwlq1", 0.02)):
        for bc in ("", "+bc"):
            for wb, ab in ((4, 8), (3, 8), (4, 4)):
                out[(scheme + bc, wb, ab)] = base - 0.05 + gain
            if scheme == "uniform":
                out[(scheme + bc, 5, 8)] = base - 0.01
    return out


def test_pwlq_merge_combines_seeds_and_recomputes_the_comparisons(pwlq, tmp_path):
    a = _pwlq_file(tmp_path, "a.json", {0: _accs(0.86)})
    b = _pwlq_file(tmp_path, "b.json", {1: _accs(0.84), 2: _accs(0.85)})
    res = pwlq.merge_results([a, b], tmp_path / "out" / "merged.json")
    assert res["seeds"] == {"fashion_mobilenetv2": [0, 1, 2]}
    fp = next(r for r in res["rows"] if r["method"] == "fp32")
    assert fp["accuracy_per_seed"] == [0.86, 0.84, 0.85] and fp["accuracy"] == pytest.approx(0.85)
    nominal = [c for c in res["comparisons"] if c["kind"] == "equal_nominal_bits"]
    assert nominal and all(c["margin"] == pytest.approx(0.02) for c in nominal)
    storage = [c for c in res["comparisons"] if c["kind"] == "equal_storage"]  # pwlq-b - uniform-(b+1)
    assert {c["uniform"] for c in storage} == {"uniform W5A8", "uniform W4A8", "uniform+bc W5A8", "uniform+bc W4A8"}
    assert json.loads((tmp_path / "out" / "merged.json").read_text())["merged_from"] == [str(a), str(b)]


def test_pwlq_merge_refuses_different_setups_and_disagreeing_seeds(pwlq, tmp_path):
    a = _pwlq_file(tmp_path, "a.json", {0: _accs(0.86)})
    other_test = _pwlq_file(tmp_path, "b.json", {1: _accs(0.84)}, n_test=5000)
    with pytest.raises(SystemExit, match="b.json was measured with"):
        pwlq.merge_results([a, other_test], tmp_path / "m.json")
    clash = _pwlq_file(tmp_path, "c.json", {0: _accs(0.80)})
    with pytest.raises(SystemExit, match="seed 0 is"):
        pwlq.merge_results([a, clash], tmp_path / "m.json")
    with pytest.raises(SystemExit, match="no such file"):
        pwlq.merge_results([tmp_path / "missing.json"], tmp_path / "m.json")


def _joint_run(method, seed, metric, ratio=64.0):
    return {"dataset": "fashion-mnist", "model": "resnet", "method": method, "seed": seed, "target_ratio": ratio,
            "size_bytes": 1000.0, "compression_ratio": ratio, "bops_ratio": 100.0, "avg_wbits": 3.0,
            "avg_abits": 4.0, "sparsity": 0.8, "bops": 1e6, "metric": metric, "metric_name": "accuracy",
            "loss_vs_fp32": 0.9 - metric}


def _joint_file(tmp_path, name, runs, selection=None, granularity="tensor"):
    p = tmp_path / name
    p.write_text(json.dumps({"benchmark": "joint", "granularity": granularity, "seconds": 5.0,
                             "candidate_selection": selection or {}, "runs": runs}))
    return p


def test_joint_merge_means_over_seeds_and_keeps_the_selected_candidates(joint, tmp_path):
    sel = {"resnet": {"chosen": "w2-3-4-6-8/a2-3-4-6-8", "val_scores": {"a": 0.8}, "overrides": {}}}
    a = _joint_file(tmp_path, "a.json", [_joint_run("joint", 0, 0.86), _joint_run("qat-after-magnitude", 0, 0.85)],
                    selection=sel)
    given = {"resnet": {"chosen": "w2-3-4-6-8/a2-3-4-6-8", "given": True, "overrides": {}}}
    b = _joint_file(tmp_path, "b.json", [_joint_run("joint", 1, 0.88), _joint_run("qat-after-magnitude", 1, 0.84),
                                         {"dataset": "fashion-mnist", "model": "resnet", "method": "joint",
                                          "seed": 2, "target_ratio": 64.0, "error": "skipped"}], selection=given)
    res = joint.merge_results([a, b], tmp_path / "out" / "joint.json")
    row = next(r for r in res["rows"] if r["method"] == "joint")
    assert row["seeds"] == 2 and row["metric"] == pytest.approx(0.87)
    assert res["candidate_selection"]["resnet"]["val_scores"] == {"a": 0.8}  # the selecting run, not the given one
    cmp = next(c for c in res["summary"]["joint_vs_baselines"] if c["baseline"] == "qat-after-magnitude")
    assert cmp["joint_metric"] - cmp["baseline_metric"] == pytest.approx(0.025)


def test_joint_merge_refuses_mixed_granularity_and_disagreeing_runs(joint, tmp_path):
    a = _joint_file(tmp_path, "a.json", [_joint_run("joint", 0, 0.86)])
    with pytest.raises(SystemExit, match="channel weight scales"):
        joint.merge_results([a, _joint_file(tmp_path, "b.json", [], granularity="channel")], tmp_path / "m.json")
    with pytest.raises(SystemExit, match="has metric"):
        joint.merge_results([a, _joint_file(tmp_path, "c.json", [_joint_run("joint", 0, 0.5)])], tmp_path / "m.json")


def test_joint_candidate_sets_parse_and_refuse_bad_text(joint):
    import argparse

    key, over = joint.parse_candidates("w4/a4-8")
    assert key == "w4/a4-8" and over == {"weight_bits": (4,), "act_bits": (4, 8)}
    for bad in ("w4", "x4/a4", "w4/a99", "w/a4"):
        with pytest.raises(argparse.ArgumentTypeError, match="candidate set"):
            joint.parse_candidates(bad)


def test_joint_settings_parse_json_values_and_refuse_unknown_fields(joint):
    import argparse

    assert joint.parse_setting("tau_schedule=whole") == ("tau_schedule", "whole")
    assert joint.parse_setting("logit_lr=0.01") == ("logit_lr", 0.01)
    assert joint.parse_setting("act_bits=[4,8]") == ("act_bits", (4, 8))
    for bad in ("no_such_field=1", "logit_lr"):
        with pytest.raises(argparse.ArgumentTypeError, match="JointConfig field"):
            joint.parse_setting(bad)


def test_joint_merge_refuses_different_ablation_settings(joint, tmp_path):
    a = _joint_file(tmp_path, "a.json", [_joint_run("joint", 0, 0.86)])
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"benchmark": "joint", "joint_set": {"tau_schedule": "whole"}, "runs": []}))
    with pytest.raises(SystemExit, match="ran joint with"):
        joint.merge_results([a, b], tmp_path / "m.json")


def test_joint_candidate_sets_start_at_the_jointconfig_default_and_carry_settings(joint):
    from prunequant.joint import JointConfig

    first, overrides = next(iter(joint.CANDIDATE_SETS.items()))
    default = JointConfig()
    assert first == "w3-4-6-8/a2-3-4-6-8"
    assert overrides == {"weight_bits": tuple(default.weight_bits), "act_bits": tuple(default.act_bits)}
    tau = joint.CANDIDATE_SETS["w2-3-4-6-8/a2-3-4-6-8/tau_schedule=whole"]
    assert tau["tau_schedule"] == "whole" != default.tau_schedule and tau["weight_bits"] == (2, 3, 4, 6, 8)


def test_joint_merge_replace_swaps_one_methods_runs_and_keeps_the_baselines(joint, tmp_path):
    old = _joint_file(tmp_path, "old.json", [_joint_run("joint", s, 0.80) for s in (0, 1)] +
                      [_joint_run("qat-after-magnitude", s, 0.85) for s in (0, 1)])
    new = _joint_file(tmp_path, "new.json", [_joint_run("joint", s, 0.90) for s in (0, 1)])
    with pytest.raises(SystemExit, match="has metric"):  # without --replace the disagreement is an error
        joint.merge_results([old, new], tmp_path / "m.json")
    res = joint.merge_results([old, new], tmp_path / "m.json", replace=("joint",))
    rows = {r["method"]: r for r in res["rows"]}
    assert rows["joint"]["metric"] == pytest.approx(0.90) and rows["qat-after-magnitude"]["metric"] == 0.85
    assert len(res["replaced"]) == 2 and {r["old_metric"] for r in res["replaced"]} == {0.80}
