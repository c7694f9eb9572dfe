"""The state protocol: carrying filters and layers exactly across chunks.

Every stateful thing in filterbank continues where it stopped:

* functions take ``zi`` and return ``zf`` (``lfilter``, ``sosfilt``, ``pcen``);
* modules have ``stream(x, state=None) -> (y, state)``, where ``state=None``
  means rest, and the front-end also ``finish(state) -> y`` for the frames
  whose windows reach past the last sample. Feeding a signal chunk by chunk
  (any chunk sizes) and concatenating the outputs (plus ``finish``) gives the
  same result as one call of the module on the whole signal.

A state is a :class:`State`: a small dict of tensors (or nested States)
that moves with ``.to()``, detaches with ``.detach()`` (truncated
backpropagation, ``filterbank.tbptt``), saves with ``torch.save`` and loads
with ``torch.load`` (a safe global, so torch's default ``weights_only=True``
takes it). A state
given back to a module is checked against what that module would make, and a
mismatch (another filter count, dtype, device or batch shape) is a clear error
naming the entry and what differs (the rules are in ``filterbank._checks``).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

__all__ = ["State", "detach"]


class State(dict):
    """A dict of tensors and nested States, with tensor-like ``to``/``detach``/``clone``."""

    def _map(self, function) -> "State":
        return State({key: value._map(function) if isinstance(value, State) else
                      (function(value) if isinstance(value, Tensor) else value) for key, value in self.items()})

    def to(self, *args, **kwargs) -> "State":
        """Every tensor ``.to(*args, **kwargs)`` (device and/or dtype)."""
        return self._map(lambda tensor: tensor.to(*args, **kwargs))

    def detach(self) -> "State":
        """Every tensor detached: gradients stop at this state."""
        return self._map(Tensor.detach)

    def clone(self) -> "State":
        return self._map(Tensor.clone)

    def __repr__(self) -> str:
        def describe(value):
            if isinstance(value, Tensor):
                return f"Tensor{tuple(value.shape)}[{str(value.dtype).replace('torch.', '')}, {value.device}]"
            return repr(value)

        return "State(" + ", ".join(f"{key}={describe(value)}" for key, value in self.items()) + ")"

    def __reduce__(self):
        # Pickled as State(plain dict): what torch.load(weights_only=True) can rebuild.
        return (State, (dict(self),))


torch.serialization.add_safe_globals([State])


def detach(state: Union[State, Tensor, None]):
    """``state.detach()`` for a State or a tensor (a functional ``zf``); None stays None."""
    if state is None:
        return None
    return state.detach()
