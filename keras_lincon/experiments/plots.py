"""The experiments' figures (matplotlib, written to files; no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    return plt


def image_grid(
    path: Path,
    panels: Mapping[str, np.ndarray],
    shape: tuple,
    *,
    marks: Mapping[str, Sequence[bool]] | None = None,
    rows: int = 8,
    cols: int = 8,
    dpi: int = 90,
) -> None:
    """One panel per entry, each a ``rows x cols`` tiling of images in [-1, 1].

    Args:
        path: the PNG to write.
        panels: title -> images, shape ``(N, h*w)`` or ``(N, h, w)``; the
            first ``rows * cols`` are shown (so tile ``i`` of every panel is
            sample ``i``, which lines up e.g. input and projection).
        shape: ``(h, w)`` of one image.
        marks: title -> per image a bool; False draws a red frame (an
            infeasible sample).
    """
    plt = _pyplot()
    marks = marks or {}
    h, w = shape
    fig, axes = plt.subplots(1, len(panels), figsize=(max(1.4, 4.2 * cols / 8) * len(panels), 0.5 + 4.1 * rows / 8))
    for ax, (title, images) in zip(np.atleast_1d(axes), panels.items(), strict=False):
        canvas = np.ones(((h + 1) * rows, (w + 1) * cols, 3))
        for i in range(min(rows * cols, len(images))):
            r, c = divmod(i, cols)
            tile = (np.clip(np.asarray(images[i]).reshape(shape), -1, 1) + 1) / 2
            rgb = np.repeat(tile[..., None], 3, axis=2)
            if title in marks and not marks[title][i]:
                rgb[0, :, :] = rgb[-1, :, :] = rgb[:, 0, :] = rgb[:, -1, :] = (1.0, 0.0, 0.0)
            canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = rgb
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def curves(
    path: Path,
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    xlabel: str = "epoch",
    log: bool = False,
    dpi: int = 90,
) -> None:
    """One subplot per entry of ``panels`` (title -> label -> values per epoch), epochs from 1."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.2))
    for ax, (title, series) in zip(np.atleast_1d(axes), panels.items(), strict=False):
        for label, values in series.items():
            ax.plot(np.arange(1, len(values) + 1), values, "--" if label.endswith("test") else "-", label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
