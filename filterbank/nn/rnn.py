"""Recurrent layers with banded or sparse hidden-to-hidden matrices, with ``torch.nn.RNN``'s interface.

``h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` as in ``torch.nn.RNN``, but
``W_hh`` is banded (:class:`BandedRNN`: each unit sees its neighbours within
the bandwidth) or sparse with a fixed pattern (:class:`SparseRNN`). The
input-to-hidden part runs for all time steps at once (one matmul); the
recurrence runs in the kernels of ``filterbank.coupled``, which touch the
band or the non-zeros only and backpropagate by the reverse-time recursion.

Both take and return what ``torch.nn.RNN`` does: ``output, h_n =
rnn(input, h_0)`` with ``input`` (L, N, H_in), or (N, L, H_in) with
``batch_first``, or unbatched (L, H_in); ``h_0``, ``h_n`` (D * num_layers,
N, H) or (D * num_layers, H); ``output`` (L, N, D * H). Parameters carry
nn.RNN's names: ``weight_ih_l{k}`` (H, H_in), ``bias_ih_l{k}``,
``bias_hh_l{k}`` (H,), with ``_reverse`` for the backward direction;
``weight_hh_l{k}`` is the band (H, kl + ku + 1) or the non-zero values (nnz,).

``stream(x, state) -> (output, state)`` continues exactly where the last
call stopped (``filterbank.streaming``); ``filterbank.tbptt`` drives it given
an iterable of chunks along time (``x.split(k, dim=0)``, or ``dim=1`` with
``batch_first``), since time is not the last axis here. A bidirectional
layer cannot stream (its backward direction needs the end of the sequence).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .. import _checks
from .._coupled_ops import input_projection
from ..coupled import banded_recurrence, dense_from_band, sparse_recurrence
from ..streaming import State

__all__ = ["BandedRNN", "SparseRNN"]


class _StructuredRNN(nn.Module):
    """The shared shell: layers, directions, dropout, shapes and state; subclasses run one recurrence."""

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str, bias: bool, num_layers: int,
                 batch_first: bool, dropout: float, bidirectional: bool, device, dtype):
        super().__init__()
        self.input_size = _checks.integer("input_size", input_size, 1)
        self.hidden_size = _checks.integer("hidden_size", hidden_size, 1)
        self.nonlinearity = _checks.choice("nonlinearity", nonlinearity, ("tanh", "relu", "identity"))
        self.bias = _checks.boolean("bias", bias)
        self.num_layers = _checks.integer("num_layers", num_layers, 1)
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.dropout = _checks.number("dropout", dropout, 0.0, 1.0, closed=(True, True))
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        factory = {"device": device, "dtype": dtype}
        bound = 1 / math.sqrt(hidden_size)  # nn.RNN's initialisation of the input weights and biases
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.directions
            for suffix in self._suffixes(layer):
                weight = torch.empty((hidden_size, layer_input), **factory).uniform_(-bound, bound)
                self.register_parameter("weight_ih" + suffix, nn.Parameter(weight))
                if bias:
                    for name in ("bias_ih", "bias_hh"):
                        self.register_parameter(name + suffix, nn.Parameter(
                            torch.empty(hidden_size, **factory).uniform_(-bound, bound)))

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.directions]

    def _recurrence(self, u: Tensor, suffix: str, h0: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _input(self, input: Tensor, hx: Optional[Tensor]) -> tuple[Tensor, Tensor, bool]:
        """``(x (N, L, H_in), h0 (D * num_layers, N, H), batched)`` from nn.RNN's arguments."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor; got {type(input).__name__}")
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
            raise ValueError(f"input must have shape {layout} or, unbatched, (L, H_in), with H_in = input_size = "
                             f"{self.input_size}; got {tuple(input.shape)}")
        weight = self.weight_ih_l0
        _checks.same_as("input", input, weight, "the module's weights")
        batched = input.ndim == 3
        x = input if not batched else (input if self.batch_first else input.transpose(0, 1))
        if not batched:
            x = x.unsqueeze(0)
        n_batch = x.shape[0]
        layers = self.num_layers * self.directions
        expected = (layers, n_batch, self.hidden_size) if batched else (layers, self.hidden_size)
        if hx is None:
            h0 = x.new_zeros((layers, n_batch, self.hidden_size))
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"hx must be a torch.Tensor or None; got {type(hx).__name__}")
            _checks.same_as("hx", hx, weight, "the module's weights")
            _checks.shape("hx", hx, expected, "num_layers * num_directions, batch, hidden_size")
            h0 = hx if batched else hx.unsqueeze(1)
        return x, h0, batched

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``(output, h_n)`` exactly as ``torch.nn.RNN`` returns them (shapes in the module's docstring)."""
        x, h0, batched = self._input(input, hx)
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                weight = getattr(self, "weight_ih" + suffix)
                # One matmul for every time step; both biases go into the input term.
                bias = (getattr(self, "bias_ih" + suffix) + getattr(self, "bias_hh" + suffix)) if self.bias else None
                u = input_projection(x.reshape(-1, x.shape[-1]), weight, bias).reshape(x.shape[:-1] + (-1,))
                if direction == 1:
                    u = u.flip(1)
                h, h_last = self._recurrence(u, suffix, h0[layer * self.directions + direction])
                outputs.append(h.flip(1) if direction == 1 else h)
                finals.append(h_last)
            x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        h_n = torch.stack(finals, 0)
        if not batched:
            return x.squeeze(0), h_n.squeeze(1)
        return (x if self.batch_first else x.transpose(0, 1)), h_n

    def stream(self, input: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """The next chunk (along time) of a sequence, continuing from ``state``.

        Args:
            input: the next steps, shaped as :meth:`forward`'s input.
            state: what the previous call returned; None means zeros.

        Returns:
            ``(output, state)``: as :meth:`forward`'s output, and ``State(h=h_n)``.
        """
        owner = type(self).__name__
        if self.bidirectional:
            raise ValueError(f"a bidirectional {owner} cannot stream: its backward direction starts at the end of "
                             "the sequence")
        hx = None
        if state is not None:
            hx = _checks.state(owner, state, ("h",))["h"]
            _checks.state_entry(owner, "h", hx, None, self.weight_ih_l0.dtype, input.device)
        output, h_n = self(input, hx)
        return output, State(h=h_n)

    def extra_repr(self) -> str:
        options = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            options.append(f"num_layers={self.num_layers}")
        if self.nonlinearity != "tanh":
            options.append(f"nonlinearity={self.nonlinearity!r}")
        options += [name + "=" + str(getattr(self, name)) for name, default in
                    (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False))
                    if getattr(self, name) != default]
        return ", ".join(options)


class BandedRNN(_StructuredRNN):
    """An Elman RNN whose hidden-to-hidden matrix is banded: unit i sees units i - kl .. i + ku.

    Args:
        input_size: H_in, features per step.
        hidden_size: H, hidden units.
        bandwidth: ``k`` (kl = ku = k) or ``(kl, ku)``, each in [0, H - 1].
        nonlinearity: ``"tanh"``, ``"relu"`` or ``"identity"``.
        bias, num_layers, batch_first, dropout, bidirectional: as ``torch.nn.RNN``.
        device, dtype: of the parameters.

    ``weight_hh_l{k}`` (H, kl + ku + 1) is the band (``weight_hh[i, d]`` couples
    unit i to unit ``i + d - kl``; entries that fall outside the matrix are
    unused and stay zero). Initialisation: the input weights and biases as
    nn.RNN (uniform in ``±1/sqrt(H)``); the band uniform in ``±1/sqrt(kl + ku +
    1)``, nn.RNN's rule with the band's fan-in, which puts the spectral
    radius of ``W_hh`` near ``1/sqrt(3)`` (~0.58, below 1) for wide layers.
    :meth:`weight_hh_dense` gives the full matrix (to load into ``torch.nn.RNN``).

    Example:
        >>> rnn = BandedRNN(40, 256, bandwidth=8)
        >>> output, h_n = rnn(torch.randn(100, 4, 40))        # (L, N, H_in)
        >>> output.shape, h_n.shape
        (torch.Size([100, 4, 256]), torch.Size([1, 4, 256]))
    """

    def __init__(self, input_size: int, hidden_size: int, bandwidth: Union[int, tuple[int, int]],
                 nonlinearity: str = "tanh", bias: bool = True, num_layers: int = 1, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        super().__init__(input_size, hidden_size, nonlinearity, bias, num_layers, batch_first, dropout,
                         bidirectional, device, dtype)
        pair = (bandwidth, bandwidth) if isinstance(bandwidth, int) and not isinstance(bandwidth, bool) else bandwidth
        self.bandwidths = _checks.bandwidths(pair, hidden_size)
        width = sum(self.bandwidths) + 1
        bound = 1 / math.sqrt(width)
        for layer in range(num_layers):
            for suffix in self._suffixes(layer):
                band = torch.empty((hidden_size, width), device=device, dtype=dtype).uniform_(-bound, bound)
                band = _inside_matrix(hidden_size, self.bandwidths, band)
                self.register_parameter("weight_hh" + suffix, nn.Parameter(band))

    def _recurrence(self, u: Tensor, suffix: str, h0: Tensor) -> tuple[Tensor, Tensor]:
        return banded_recurrence(u, getattr(self, "weight_hh" + suffix), self.bandwidths, h0=h0,
                                 nonlinearity=self.nonlinearity, time_axis=-2)

    def weight_hh_dense(self, layer: int = 0, reverse: bool = False) -> Tensor:
        """(H, H) the hidden-to-hidden matrix of ``layer`` (its backward direction with ``reverse``)."""
        return dense_from_band(getattr(self, f"weight_hh_l{layer}" + ("_reverse" if reverse else "")),
                               self.bandwidths)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bandwidth={self.bandwidths}"


def _inside_matrix(n_channels: int, bandwidths: tuple[int, int], band: Tensor) -> Tensor:
    """``band`` (C, kl + ku + 1) with the entries whose column falls outside the C x C matrix set to zero."""
    lower = bandwidths[0]
    columns = torch.arange(n_channels, device=band.device).unsqueeze(-1) + torch.arange(band.shape[-1],
                                                                                           device=band.device) - lower
    return band * ((columns >= 0) & (columns < n_channels))


class SparseRNN(_StructuredRNN):
    """An Elman RNN whose hidden-to-hidden matrix has a fixed sparsity pattern (CSR).

    Args:
        input_size: H_in, features per step.
        hidden_size: H, hidden units.
        pattern: (H, H) bool tensor (or a sparse tensor, whose non-zeros are
            the pattern): which couplings exist. Give this or ``density``.
        density: a share in (0, 1]: each layer draws a random pattern with
            ``round(density * H)`` couplings per unit (from torch's generator,
            so ``torch.manual_seed`` makes it reproducible).
        nonlinearity, bias, num_layers, batch_first, dropout, bidirectional,
        device, dtype: as :class:`BandedRNN`.

    ``weight_hh_l{k}`` (nnz,) holds the non-zeros in CSR order, with the
    pattern in the buffers ``crow_l{k}``, ``col_l{k}``. Initialisation: the
    non-zeros uniform in ``±1/sqrt(couplings per unit)`` (spectral radius
    near 0.58, as :class:`BandedRNN`).
    """

    def __init__(self, input_size: int, hidden_size: int, pattern: Optional[Tensor] = None,
                 density: Optional[float] = None, nonlinearity: str = "tanh", bias: bool = True,
                 num_layers: int = 1, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, nonlinearity, bias, num_layers, batch_first, dropout,
                         bidirectional, device, dtype)
        if (pattern is None) == (density is None):
            raise ValueError("SparseRNN takes either pattern or density (not both, not neither)")
        if pattern is not None:
            mask = _pattern_mask(pattern, hidden_size)
        else:
            self.density = _checks.number("density", density, 0.0, 1.0, closed=(False, True))
        for layer in range(num_layers):
            for suffix in self._suffixes(layer):
                layer_mask = mask if pattern is not None else _random_pattern(hidden_size, self.density)
                crow, col = _csr_of(layer_mask.to(device))
                per_unit = max(1.0, col.shape[0] / hidden_size)
                bound = 1 / math.sqrt(per_unit)
                values = torch.empty(col.shape[0], device=device, dtype=dtype).uniform_(-bound, bound)
                self.register_buffer("crow" + suffix, crow)
                self.register_buffer("col" + suffix, col)
                self.register_parameter("weight_hh" + suffix, nn.Parameter(values))

    def _recurrence(self, u: Tensor, suffix: str, h0: Tensor) -> tuple[Tensor, Tensor]:
        matrix = (getattr(self, "crow" + suffix), getattr(self, "col" + suffix), getattr(self, "weight_hh" + suffix))
        return sparse_recurrence(u, matrix, h0=h0, nonlinearity=self.nonlinearity, time_axis=-2)

    def weight_hh_dense(self, layer: int = 0, reverse: bool = False) -> Tensor:
        """(H, H) the hidden-to-hidden matrix of ``layer`` (its backward direction with ``reverse``)."""
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        crow, col = getattr(self, "crow" + suffix), getattr(self, "col" + suffix)
        values = getattr(self, "weight_hh" + suffix)
        rows = torch.repeat_interleave(torch.arange(self.hidden_size, device=crow.device), crow.diff())
        dense = values.new_zeros((self.hidden_size, self.hidden_size))
        dense[rows, col] = values
        return dense

    def extra_repr(self) -> str:
        nnz = self.weight_hh_l0.shape[0]
        return super().extra_repr() + f", nnz={nnz} ({nnz / self.hidden_size ** 2:.3g} of H x H)"


def _pattern_mask(pattern, hidden_size: int) -> Tensor:
    """(H, H) bool from a bool tensor or a sparse tensor's non-zeros."""
    if not isinstance(pattern, Tensor):
        raise TypeError(f"pattern must be a torch.Tensor (bool, or sparse); got {type(pattern).__name__}")
    if pattern.layout != torch.strided:
        pattern = pattern.to_dense() != 0
    elif pattern.dtype != torch.bool:
        raise TypeError(f"pattern must be a bool tensor or a sparse tensor; got a dense {pattern.dtype} tensor "
                        "(use pattern != 0)")
    _checks.shape("pattern", pattern, (hidden_size, hidden_size), "hidden_size x hidden_size")
    return pattern


def _random_pattern(hidden_size: int, density: float) -> Tensor:
    """(H, H) bool with ``round(density * H)`` (at least one) couplings per row, the columns drawn at random."""
    per_row = max(1, round(density * hidden_size))
    scores = torch.rand(hidden_size, hidden_size)
    columns = scores.topk(per_row, dim=1).indices
    mask = torch.zeros(hidden_size, hidden_size, dtype=torch.bool)
    mask.scatter_(1, columns, True)
    return mask


def _csr_of(mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(crow (H + 1,), col (nnz,))`` int64 of a bool mask, columns sorted within each row."""
    crow = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    crow[1:] = mask.sum(1).cumsum(0)
    return crow, mask.nonzero()[:, 1].contiguous()
