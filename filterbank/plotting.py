"""Drawing a filterbank's magnitude responses (needs matplotlib, an optional extra)."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["plot_responses"]


def plot_responses(bank, ax=None, n_frequencies: int = 2048, db_range: float = 60.0, log_frequency: bool = True,
                   title: Optional[str] = None):
    """Draw every filter's magnitude response of ``bank`` (in dB) on one axis.

    Args:
        bank: a module of ``filterbank.nn`` (anything with ``responses(n)`` and
            ``sample_rate``).
        ax: a matplotlib axis; default a new figure's.
        n_frequencies: frequencies on the grid.
        db_range: how far below 0 dB the axis reaches.
        log_frequency: logarithmic frequency axis.

    Returns:
        The axis.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("plot_responses needs matplotlib: pip install 'filterbank[demo]'") from error
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    with torch.no_grad():
        frequencies, magnitude = bank.responses(n_frequencies)
    decibels = 20 * torch.log10(magnitude.clamp_min(1e-12)).cpu()
    frequencies = frequencies.cpu()
    if log_frequency:
        keep = frequencies > 0
        frequencies, decibels = frequencies[keep], decibels[:, keep]
    for index, curve in enumerate(decibels):
        ax.plot(frequencies, curve, linewidth=0.8, color=plt.cm.viridis(index / max(1, len(decibels) - 1)))
    ax.set(xscale="log" if log_frequency else "linear", ylim=(-db_range, float(decibels.max()) + 3),
           xlim=(float(frequencies[0]), bank.sample_rate / 2), xlabel="frequency (Hz)", ylabel="dB",
           title=title or f"{type(bank).__name__}: {len(decibels)} filters")
    return ax
