"""Bar charts of benchmark figures for docs/performance.md (matplotlib, headless).

Each benchmark calls :func:`save_bars` when given ``--plot-dir``; the
benchmarks nox session passes ``docs/images/benchmarks``, so the PNGs the docs
show are the ones the session produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_bars(
    plot_dir: str | None,
    name: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    ylabel: str,
) -> None:
    if not plot_dir:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    bars = axes.bar(list(labels), list(values), color="#3f6fb5")
    axes.bar_label(bars, fmt="%.3g")
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(ylabel)
    axes.margins(y=0.15)
    figure.tight_layout()
    path = Path(plot_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    print(f"   plot: {path}")


def save_lines(
    plot_dir: str | None,
    name: str,
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
) -> None:
    """One line per series of (x, y) points, e.g. latency against throughput per mode."""
    if not plot_dir:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    for label, (xs, ys) in series.items():
        axes.plot(list(xs), list(ys), marker="o", label=label)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.legend()
    figure.tight_layout()
    path = Path(plot_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    print(f"   plot: {path}")
