"""The learning-curve PNG written at the end of a run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on training machines
import matplotlib.pyplot as plt


def plot_learning_curve(rows: list[dict], path: Path) -> None:
    """Predator return and prey return against env steps, from the metrics rows."""
    steps = [row["env_steps"] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [row["predator_return"] for row in rows], label="predator return (sum over predators)")
    ax.plot(steps, [row["prey_return"] for row in rows], label="prey return")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean evaluation return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
