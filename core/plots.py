"""Figures as PNG (or any format matplotlib writes), drawn on the Agg canvas: no pyplot global state, no display."""
from __future__ import annotations

from core import files


def new_figure(width: float = 7, height: float = 4.5):
    """(figure, axes) on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig, path) -> None:
    """Lay out and write the figure atomically; the format is the file's extension."""
    fig.tight_layout()
    fmt = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
    with files.replacing(path) as tmp:
        fig.savefig(tmp, format=fmt)
