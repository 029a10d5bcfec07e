"""Charts of benchmark figures for docs/performance.md (matplotlib, headless).

Each benchmark calls :func:`save_bars` or :func:`save_lines` when given
``--plot-dir``; the benchmarks nox session passes ``docs/images/benchmarks``, so
the PNGs the docs show are the ones the session produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _save(plot_dir: str | None, name: str, title: str, ylabel: str, draw: Callable[[Any], None]) -> None:
    """One 6x3.2-inch chart: ``draw(axes)`` fills it; titled, labelled, written as NAME.png."""
    if not plot_dir:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    draw(axes)
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(ylabel)
    figure.tight_layout()
    path = Path(plot_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    print(f"   plot: {path}")


def save_bars(
    plot_dir: str | None,
    name: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    ylabel: str,
) -> None:
    def draw(axes: Any) -> None:
        bars = axes.bar(list(labels), list(values), color="#3f6fb5")
        axes.bar_label(bars, fmt="%.3g")
        axes.margins(y=0.15)

    _save(plot_dir, name, title, ylabel, draw)


def save_lines(
    plot_dir: str | None,
    name: str,
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
) -> None:
    """One line per series of (x, y) points, e.g. latency against throughput per mode."""

    def draw(axes: Any) -> None:
        for label, (xs, ys) in series.items():
            axes.plot(list(xs), list(ys), marker="o", label=label)
        axes.set_xlabel(xlabel)
        axes.legend()

    _save(plot_dir, name, title, ylabel, draw)
