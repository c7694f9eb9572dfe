"""Truncated backpropagation through time over long signals.

Training on an hour of audio at full rate would keep every sample's graph
alive. Here a long signal is cut into chunks of ``chunk_size`` samples; each
chunk is run from the state the previous one left, *detached*, and the user's
step (loss, backward, optimiser step) sees that chunk's output only. Memory is
bounded by the chunk length, whatever the signal's length, and each chunk's
gradient equals the full-BPTT gradient of the same loss with the incoming
state held constant.

Optionally gradients reach further back: with ``backprop_samples = k2 > k1 =
chunk_size``, each step reruns the previous ``k2 - k1`` samples from the
state detached there, so the chunk's loss also trains through them (cheap:
filtering is fast; the rerun's outputs are dropped).

Works with any ``stream(chunk, state) -> (output, state)``: a module's
``stream`` (``filterbank.streaming``) or a plain function such as
``lambda chunk, zi: lfilter(b, a, chunk, zi=zi)``.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Iterator, Optional, Union

from torch import Tensor

from . import _checks
from .streaming import State, detach

__all__ = ["chunks", "tbptt"]


def chunks(x: Tensor, chunk_size: int) -> Iterator[Tensor]:
    """Views of ``x`` (..., time) of ``chunk_size`` samples along the last axis (the last may be shorter)."""
    _checks.integer("chunk_size", chunk_size, 1)
    for start in range(0, x.shape[-1], chunk_size):
        yield x[..., start : start + chunk_size]


def tbptt(
    stream: Callable, signal: Union[Tensor, Iterable[Tensor]], chunk_size: Optional[int], step: Callable,
    *, state=None, backprop_samples: Optional[int] = None,
):
    """Run ``stream`` over ``signal`` chunk by chunk, calling ``step`` on each chunk's output.

    Args:
        stream: ``(chunk, state) -> (output, state)``; ``state=None`` means rest.
        signal: (..., time) tensor, cut into chunks of ``chunk_size`` samples,
            or an iterable of (..., chunk) tensors (e.g. read from disk or
            generated, so that the whole signal never sits in memory; then
            ``chunk_size`` may be None).
        chunk_size: samples per chunk (k1).
        step: ``(output, index) -> anything``: typically computes a loss on
            the chunk's output, calls ``backward()`` and steps an optimiser.
            Its return values are collected.
        state: the state to start from (None: rest).
        backprop_samples: k2 >= k1, a multiple of ``chunk_size``: how far back
            gradients reach; default ``chunk_size`` (plain truncation).

    Returns:
        ``(results, state)``: ``step``'s return values, and the (detached) state
        after the last chunk, to continue with.

    Example:
        >>> import filterbank, torch
        >>> b = torch.tensor([0.2, 0.0, -0.2], requires_grad=True)
        >>> a = torch.tensor([1.0, -1.6, 0.8])
        >>> def step(y, index):
        ...     loss = y.square().mean()
        ...     loss.backward()
        ...     return float(loss)
        >>> losses, zf = tbptt(lambda chunk, zi: filterbank.lfilter(b, a, chunk, zi=zi if zi is not None
        ...                    else torch.zeros(2)), torch.randn(1000), 250, step)
        >>> len(losses)
        4
    """
    if not callable(stream) or not callable(step):
        raise TypeError(f"stream and step must be callables; got {type(stream).__name__} and {type(step).__name__}")
    chunk_size = _checks.integer("chunk_size", chunk_size, 1, optional=True)
    if state is not None and not isinstance(state, (State, Tensor)):
        raise TypeError(f"state must be None, a filterbank.streaming.State or a tensor (a zf); got "
                        f"{type(state).__name__}")
    if isinstance(signal, Tensor):
        if chunk_size is None:
            raise ValueError("chunk_size is needed to cut a tensor signal into chunks")
        pieces = chunks(signal, chunk_size)
    else:
        pieces = iter(signal)
    overlap_chunks = 0
    if backprop_samples is not None:
        _checks.integer("backprop_samples", backprop_samples, 1)
        if chunk_size is None or backprop_samples < chunk_size or backprop_samples % chunk_size:
            raise ValueError(f"backprop_samples must be a multiple of chunk_size ({chunk_size}) and at least it; "
                             f"got {backprop_samples!r}")
        overlap_chunks = backprop_samples // chunk_size - 1
    # The last `overlap_chunks` chunks and the detached states before each.
    history: deque = deque(maxlen=overlap_chunks)
    results = []
    state = detach(state)
    for index, chunk in enumerate(pieces):
        if overlap_chunks and history:
            # Rerun the recent chunks with gradients, from the state detached before them.
            running = history[0][0]
            for _, previous_chunk in history:
                _, running = stream(previous_chunk, running)
            output, new_state = stream(chunk, running)
        else:
            output, new_state = stream(chunk, state)
        results.append(step(output, index))
        if overlap_chunks:
            history.append((state, chunk))
        state = detach(new_state)
    return results, state
