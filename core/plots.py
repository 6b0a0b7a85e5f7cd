"""Figures as PNG (or any format matplotlib writes), drawn on the Agg canvas: no pyplot global state, no display."""
from __future__ import annotations

import io

from core import files


def new_figure(width: float = 7, height: float = 4.5):
    """(figure, axes) on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig, path) -> None:
    """Lay out and write the figure atomically (any FileSystems path); the format is the file's extension."""
    fig.tight_layout()
    fmt = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    files.write_atomic(path, buf.getvalue())
