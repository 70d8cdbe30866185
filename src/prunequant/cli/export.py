"""``prunequant export MODEL --format pq|onnx`` and ``prunequant bench MODEL``.

MODEL is a model file written by :func:`prunequant.io.save`, a packed artifact (``.pq``) written by
:func:`prunequant.export.export`, or a reference model name (``digits_cnn``, ``mlp``, ...; trained on digits with
:func:`prunequant.models.train_reference`). ``--sparsity`` (per-layer magnitude pruning) and ``--wbits`` /
``--scheme`` (post-training quantization of the weights, ``PWLQConfig(abits=None)``) compress it first.

Note: :func:`prunequant.io.load` bakes fake quantizers into float weights, so a ``.safetensors`` model file
exports its quantized layers as floats (pruned ones stay sparse); export from the in-memory model, or pass
``--wbits`` here, to get bit-packed codes.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError as e:
        raise typer.BadParameter(f"--input-shape must be comma-separated integers, got {text!r}") from e
    if not shape or min(shape) < 1:
        raise typer.BadParameter(f"--input-shape must be positive integers, got {text!r}")
    return shape


def _load(model: str, sparsity: float, wbits: int | None, scheme: str, seed: int, input_shape: tuple[int, ...]):
    """``(compressed_model, dense_fp32_model_or_None, example_input)``."""
    import copy

    import torch

    from ..errors import ConfigError, StorageError
    from ..models import MODEL_REGISTRY

    path = Path(model)
    dense = None
    if path.exists():
        from ..io import read_metadata

        kind = read_metadata(path).get("kind")
        if kind == "pq-artifact":
            from ..export import load_compressed

            m = load_compressed(path)
        elif kind == "model":
            from ..io import load

            m = load(path)
        else:
            raise StorageError(f"{path}: not a prunequant model file or artifact (kind {kind!r})")
    elif model in MODEL_REGISTRY or model in ("digits_cnn", "mlp", "resnet_small", "mobilenet_small"):
        from ..models import train_reference

        m, _ = train_reference(model, seed=seed)
        dense = copy.deepcopy(m).eval()
    else:
        raise ConfigError(f"MODEL must be a model file, a .pq artifact or a reference model name; got {model!r}")
    m.eval()
    x = torch.rand(*input_shape)
    if sparsity:
        from ..pruning.base import apply_mask_, prunable_modules

        for name, mod, pname in prunable_modules(m):
            w = getattr(mod, pname).detach()
            k = max(1, int(sparsity * w.numel()))
            apply_mask_(mod, pname, w.abs() > w.abs().flatten().kthvalue(k).values, layer_name=name)
    if wbits is not None:
        from ..api import quantize_
        from ..quantization import PWLQConfig

        # bias correction adds a per-channel shift that would turn pruned zeros non-zero
        quantize_(m, PWLQConfig(wbits=wbits, abits=None, scheme=scheme, lloyd_max=False,
                                bias_correction=not sparsity))
    return m.eval(), dense, x


def export(model: str = typer.Argument(..., help="Model file, .pq artifact, or reference model name."),
           format: str = typer.Option("pq", "--format", "-f", help="pq (packed artifact) or onnx."),
           out: str = typer.Option("", "--out", "-o", help="Output path (default: MODEL stem + .pq/.onnx)."),
           sparsity: float = typer.Option(0.0, help="Magnitude-prune each layer to this sparsity first."),
           wbits: int = typer.Option(None, help="Quantize weights to this many bits first."),
           scheme: str = typer.Option("pwlq", help="pwlq or uniform (with --wbits)."),
           pwlq: str = typer.Option("dequantized", help="ONNX form of PWLQ weights: dequantized or qdq."),
           seed: int = typer.Option(0, help="Seed for training a reference model."),
           input_shape: str = typer.Option("1,1,8,8", help="Example input shape (ONNX tracing).")) -> None:
    """Write MODEL as a packed artifact (bit-packed codes, sparse indices) or as ONNX (QDQ), and print its size."""
    from rich.console import Console
    from rich.table import Table

    from ..export import export as export_pq
    from ..export import export_onnx

    if format not in ("pq", "onnx"):
        raise typer.BadParameter("--format must be pq or onnx")
    m, _, x = _load(model, sparsity, wbits, scheme, seed, _shape(input_shape))
    out = Path(out) if out else Path(Path(model).stem + (".pq" if format == "pq" else ".onnx"))
    console = Console()
    if format == "onnx":
        info = export_onnx(m, out, x, pwlq=pwlq)
        console.print(f"wrote {out}: {info['bytes']} bytes; onnxruntime max rel err {info['rel_err']:.2g}; "
                      f"nodes {info['nodes']}")
        print(json.dumps({"path": str(out), **{k: v for k, v in info.items() if k != "path"}}))
        return
    res = export_pq(m, out)
    table = Table(title=f"{out}")
    for col in ("tensor", "kind", "format", "bits", "nnz/numel", "bytes", "fp32 bytes"):
        table.add_column(col)
    for e in res.entries:
        if e.kind != "r":
            table.add_row(e.name, e.kind, e.format, str(e.bits), f"{e.nnz}/{e.numel}", str(e.nbytes),
                          str(e.fp32_nbytes))
    console.print(table)
    console.print(f"file {res.file_bytes} B = {res.size_ratio:.3f} x fp32 ({res.fp32_bytes} B); "
                  f"{100 * res.overhead:.1f}% over the exact bit count of the stored streams")
    print(json.dumps({"path": str(out), "file_bytes": res.file_bytes, "fp32_bytes": res.fp32_bytes,
                      "size_ratio": res.size_ratio, "overhead": res.overhead}))


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
    from rich.console import Console
    from rich.table import Table

    from ..export import export as export_pq
    from ..export import optimize
    from ..export.plain import baked_copy

    torch.set_num_threads(threads)
    m, dense, x1 = _load(model, sparsity, wbits, scheme, seed, _shape(input_shape))
    if dense is None:  # a file: the dense baseline is the same weights as plain fp32 layers
        dense = baked_copy(m)
    with tempfile.TemporaryDirectory() as d:
        res = export_pq(m, Path(d) / "m.pq")
    console = Console()
    table = Table(title=f"{model}: latency (median of {repeats}, {threads} thread(s)) and size")
    for col in ("batch", "dense fp32 ms", "fast ms", "speedup", "paths"):
        table.add_column(col)
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
        table.add_row(str(b), f"{td:.4f}", f"{tf:.4f}", f"{td / tf:.2f}x", json.dumps(paths))
        rows.append({"batch": b, "dense_ms": td, "fast_ms": tf, "speedup": td / tf, "paths": paths})
    console.print(table)
    console.print(f"artifact {res.file_bytes} B = {res.size_ratio:.3f} x fp32 ({res.fp32_bytes} B)")
    print(json.dumps({"model": model, "rows": rows, "artifact_bytes": res.file_bytes, "fp32_bytes": res.fp32_bytes,
                      "size_ratio": res.size_ratio}))
