"""Figures that never touch the user's matplotlib backend: a bare ``Figure`` on an Agg canvas, written atomically.

``matplotlib.pyplot`` is never imported here, so a notebook or GUI session keeps its backend and its figure list.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def require_matplotlib() -> None:
    """Raise a one-line ``ImportError`` that names the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'prunequant[viz]'") from e


def new_figure(figsize: tuple[float, float]) -> Any:
    """A ``matplotlib.figure.Figure`` attached to its own Agg canvas (no pyplot, no backend switch)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
