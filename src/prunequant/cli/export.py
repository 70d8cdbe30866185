"""``prunequant export MODEL --format pq|onnx`` and ``prunequant bench MODEL``.

MODEL is a model file written by :func:`prunequant.save` (``.pq``) or :func:`prunequant.io.save`, a packed
deployment artifact of :func:`prunequant.export.export`, or a reference model name (``digits_cnn``, ``mlp``,
...; trained on digits with :func:`prunequant.models.reference.train_reference`). ``--sparsity`` (per-layer
magnitude pruning) and ``--wbits`` / ``--scheme`` (post-training quantization of the weights,
``PWLQConfig(abits=None)``) compress it first.

Note: :func:`prunequant.io.load` bakes fake quantizers into float weights, so a ``.safetensors`` model file
exports its quantized layers as floats (pruned ones stay sparse); export from the in-memory model, or pass
``--wbits`` here, to get bit-packed codes.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer


def _load(model: str, sparsity: float, wbits: int | None, scheme: str, seed: int, input_shape: str):
    """``(compressed_model, dense_fp32_model_or_None, example_input)``; all arguments checked first."""
    import copy

    import torch

    from ..errors import ConfigError
    from ..pruning import MagnitudeConfig
    from ..quantization import PWLQConfig
    from ..workflow import build_model_from, check_model_source
    from . import common

    shape = common.parse_shape(input_shape)
    prune_cfg = MagnitudeConfig(sparsity=sparsity, scope="uniform") if sparsity else None
    # bias correction adds a per-channel shift that would turn pruned zeros non-zero
    quant_cfg = PWLQConfig(wbits=wbits, abits=None, scheme=scheme, bias_correction=not sparsity) \
        if wbits is not None else None
    if scheme not in ("pwlq", "uniform"):
        raise ConfigError(f"--scheme must be pwlq or uniform, got {scheme!r}")
    source = check_model_source(model)
    m = build_model_from(source, seed=seed)
    dense = copy.deepcopy(m).eval() if source.kind == "reference" else None
    x = torch.rand(*shape)
    if prune_cfg is not None:
        from ..api import prune_

        prune_(m, prune_cfg)
    if quant_cfg is not None:
        from ..api import quantize_

        quantize_(m, quant_cfg)
    return m.eval(), dense, x


def export(model: str = typer.Argument(..., help="Model file, .pq artifact, or reference model name."),
           format: str = typer.Option("pq", "--format", "-f", help="pq (packed artifact) or onnx."),
           out: str = typer.Option("", "--out", "-o", help="Output path (default: MODEL stem + .pq/.onnx)."),
           sparsity: float = typer.Option(0.0, help="Magnitude-prune each layer to this sparsity first."),
           wbits: int = typer.Option(None, help="Quantize weights to this many bits first."),
           scheme: str = typer.Option("pwlq", help="pwlq or uniform (with --wbits)."),
           pwlq: str = typer.Option("dequantized", help="ONNX form of PWLQ weights: dequantized or qdq."),
           seed: int = typer.Option(0, help="Seed for training a reference model."),
           input_shape: str = typer.Option("1,1,8,8", help="Example input shape (ONNX tracing)."),
           check: bool = typer.Option(True, "--check/--no-check",
                                      help="ONNX: compare onnxruntime with PyTorch on a seeded input.")) -> None:
    """Write MODEL as the one compressed model file (``.pq``: bit-packed codes, masks, quantizer specs, loadable with
    ``prunequant.load``) or as ONNX (QDQ), and print its size."""
    from ..export import export_onnx
    from ..viz.tables import print_table

    if format not in ("pq", "onnx"):
        from ..errors import ConfigError

        raise ConfigError(f"--format must be pq or onnx, got {format!r}")
    m, _, x = _load(model, sparsity, wbits, scheme, seed, input_shape)
    out = Path(out) if out else Path(Path(model).stem + (".pq" if format == "pq" else ".onnx"))
    if format == "onnx":
        info = export_onnx(m, out, x, pwlq=pwlq, check=check)
        checked = f"onnxruntime max rel err {info['rel_err']:.2g}" if "rel_err" in info else "not checked"
        print(f"wrote {out}: {info['bytes']} bytes; {checked}; nodes {info['nodes']}")
        print(json.dumps({"path": str(out), **{k: v for k, v in info.items() if k != "path"}}))
        return
    from ..analysis import report
    from ..export.pqfile import save

    res = save(m, out)
    rep = report(m, x, file_bytes=False)
    print_table([{"layer": r.name, "params": r.params, "nonzeros": r.nonzeros, "w bits": r.weight_bits,
                  "bytes": round(r.bytes)} for r in rep.rows if r.params], title=str(out))
    fp32 = rep.total.bytes_dense
    print(f"file {res.file_bytes} B = {res.file_bytes / fp32:.3f} x fp32 ({fp32:.0f} B); "
          f"report rows {rep.total.bytes:.0f} B")
    print(json.dumps({"path": str(out), "file_bytes": res.file_bytes, "fp32_bytes": fp32,
                      "size_ratio": res.file_bytes / fp32, "bytes_reported": rep.total.bytes}))


def bench(model: str = typer.Argument(..., help="Model file, .pq artifact, or reference model name."),
          batch: str = typer.Option("1,64", help="Comma-separated batch sizes."),
          repeats: int = typer.Option(30, help="Timed repeats per path (median reported)."),
          sparsity: float = typer.Option(0.0, help="Magnitude-prune each layer to this sparsity first."),
          wbits: int = typer.Option(None, help="Quantize weights to this many bits first."),
          scheme: str = typer.Option("pwlq", help="pwlq or uniform (with --wbits)."),
          threads: int = typer.Option(1, help="torch threads."),
          seed: int = typer.Option(0, help="Seed for training a reference model."),
          input_shape: str = typer.Option("1,1,8,8", help="Input shape for one sample (batch dim first).")) -> None:
    """Latency (automatic per-layer fast paths vs the dense fp32 model) and artifact size vs fp32 bytes."""
    import statistics
    import tempfile
    import time

    import torch

    from ..export import export as export_pq
    from ..export import optimize
    from ..export.plain import baked_copy

    torch.set_num_threads(threads)
    m, dense, x1 = _load(model, sparsity, wbits, scheme, seed, input_shape)
    if dense is None:  # a file: the dense baseline is the same weights as plain fp32 layers
        dense = baked_copy(m)
    with tempfile.TemporaryDirectory() as d:
        res = export_pq(m, Path(d) / "m.pq")
    rows = []
    for b in [int(v) for v in batch.split(",")]:
        x = x1.expand(b, *x1.shape[1:]).contiguous()
        fast, choices = optimize(m, x, repeats=5)
        times = {"dense": [], "fast": []}
        with torch.no_grad():
            for _ in range(3):
                dense(x), fast(x)
            for _ in range(repeats):
                for k, f in (("dense", dense), ("fast", fast)):
                    t0 = time.perf_counter()
                    f(x)
                    times[k].append(time.perf_counter() - t0)
        td, tf = (statistics.median(times[k]) * 1e3 for k in ("dense", "fast"))
        paths = {}
        for c in choices:
            paths[c.path] = paths.get(c.path, 0) + 1
        rows.append({"batch": b, "dense_ms": td, "fast_ms": tf, "speedup": td / tf, "paths": paths})
    from ..viz.tables import print_table

    print_table([{"batch": r["batch"], "dense fp32 ms": f"{r['dense_ms']:.4f}", "fast ms": f"{r['fast_ms']:.4f}",
                  "speedup": f"{r['speedup']:.2f}x", "paths": json.dumps(r["paths"])} for r in rows],
                title=f"{model}: latency (median of {repeats}, {threads} thread(s)) and size")
    print(f"artifact {res.file_bytes} B = {res.size_ratio:.3f} x fp32 ({res.fp32_bytes} B)")
    print(json.dumps({"model": model, "rows": rows, "artifact_bytes": res.file_bytes, "fp32_bytes": res.fp32_bytes,
                      "size_ratio": res.size_ratio}))
