"""A step-by-step model, in torch on the CPU, of the CUDA kernels in csrc/.

It follows csrc/iir_scan.cu level by level (chunks run from zero state, the
Hillis-Steele scan with powers of A^chunk inside a tile, the tiles chained
kThreads at a time, the rerun from the true start states) with the same
index arithmetic, so that tests on a machine without a GPU check the
algorithm and the Python glue in filterbank/kernels/cuda.py; the tests on a
GPU then check the CUDA code against the same references.

``ModelExtension`` has the binding's two functions, ``section_scan`` and
``correlate``, with the binding's signatures.
"""

from __future__ import annotations

import torch


def _companion(a):
    """(P, K, K): row 0 = -a[1:], rows r >= 1 shift."""
    n_channels, order = a.shape[0], a.shape[1] - 1
    matrix = torch.zeros((n_channels, order, order), dtype=a.dtype)
    matrix[:, 0, :] = -a[:, 1:]
    for r in range(1, order):
        matrix[:, r, r - 1] = 1
    return matrix


class ModelExtension:
    def __init__(self, chunk: int = 16, threads: int = 256):
        assert threads & (threads - 1) == 0
        self.chunk, self.threads = chunk, threads
        self.log_threads = threads.bit_length() - 1

    # -- levels 1 and 3: one chunk ------------------------------------------
    def _run_chunk(self, xs, bn, an, zi, hx, s, t0, length, store):
        order = bn.shape[1] - 1
        hx, s = hx.clone(), s.clone()
        outputs = []
        for tt in range(length):
            xv = xs[:, tt]
            v = bn[:, 0] * xv
            for k in range(1, order + 1):
                v = v + bn[:, k] * hx[:, k - 1]
            for k in range(1, order + 1):
                v = v - an[:, k] * s[:, k - 1]
            if zi is not None and t0 + tt < order:
                v = v + zi[:, t0 + tt]
            hx = torch.cat([xv[:, None], hx[:, :-1]], dim=1)
            s = torch.cat([v[:, None], s[:, :-1]], dim=1)
            outputs.append(v)
        return s, (torch.stack(outputs, 1) if store and outputs else None)

    # -- level 2: the scan over a block ---------------------------------------
    def _block_scan(self, values, powers):
        """values: list over threads of (P, K); powers[m]: (P, K, K) for offset 2^m."""
        values = [v.clone() for v in values]
        for m in range(self.log_threads):
            d = 1 << m
            previous = [v.clone() for v in values]
            for i in range(d, self.threads):
                values[i] = values[i] + torch.einsum("prc,pc->pr", powers[m], previous[i - d])
        return values

    def section_scan(self, x, x_index, b, a, zi, y, reverse):
        n_channels, n_time = y.shape
        order = b.shape[1] - 1
        signal = x[x_index]
        if reverse:
            signal = signal.flip(-1)
        chunk, threads = self.chunk, self.threads
        tile = chunk * threads
        n_tiles = -(-n_time // tile)
        # Powers (A^chunk)^(2^m), m = 0 .. 2 log2(threads) - 1.
        current = torch.linalg.matrix_power(_companion(a), chunk)
        powers = []
        for _ in range(2 * self.log_threads):
            powers.append(current)
            current = current @ current
        zeros = torch.zeros((n_channels, order), dtype=y.dtype)

        def chunk_inputs(tile_index, i):
            t0 = tile_index * tile + i * chunk
            length = max(0, min(chunk, n_time - t0))
            history = torch.stack(
                [signal[:, t0 - 1 - k] if 0 <= t0 - 1 - k < n_time else torch.zeros(n_channels, dtype=y.dtype)
                 for k in range(order)], dim=1)
            return t0, length, signal[:, t0 : t0 + length], history

        def tile_pass(tile_index, start, final):
            zi_tile = zi if tile_index == 0 else None
            ends = []
            inputs = [chunk_inputs(tile_index, i) for i in range(threads)]
            for t0, length, xs, hx in inputs:
                ends.append(self._run_chunk(xs, b, a, zi_tile, hx, zeros, t0, length, False)[0])
            if final:
                ends[0] = ends[0] + torch.einsum("prc,pc->pr", powers[0], start)
            scanned = self._block_scan(ends, powers[: self.log_threads])
            if not final:
                return scanned[-1]
            pieces = []
            for i, (t0, length, xs, hx) in enumerate(inputs):
                s = start if i == 0 else scanned[i - 1]
                _, out = self._run_chunk(xs, b, a, zi_tile, hx, s, t0, length, True)
                if out is not None:
                    pieces.append(out)
            return torch.cat(pieces, dim=1)

        tile_ends = [tile_pass(j, None, False) for j in range(n_tiles)]
        # tile_carry_kernel: rounds of `threads` tiles, powers of M^threads.
        starts, carry = [], zeros
        for first in range(0, n_tiles, threads):
            values = [tile_ends[j] if j < n_tiles else zeros for j in range(first, first + threads)]
            values[0] = values[0] + torch.einsum("prc,pc->pr", powers[self.log_threads], carry)
            scanned = self._block_scan(values, powers[self.log_threads :])
            for i in range(threads):
                if first + i < n_tiles:
                    starts.append(carry if i == 0 else scanned[i - 1])
            carry = scanned[-1]
        result = torch.cat([tile_pass(j, starts[j], True) for j in range(n_tiles)], dim=1) if n_tiles else y[:, :0]
        y.copy_(result.flip(-1) if reverse else result)

    def correlate(self, u, x, x_index, y, b, grad_in, sums):
        order = b.shape[1] - 1
        signal = x[x_index]
        n_time = u.shape[-1]
        for k in range(order + 1):
            sums[:, k] += (u[:, k:] * signal[:, : n_time - k]).sum(-1).double() if k < n_time else 0
        for k in range(1, order + 1):
            sums[:, order + k] += (u[:, k:] * y[:, : n_time - k]).sum(-1).double() if k < n_time else 0
        if grad_in is not None:
            total = torch.zeros_like(u)
            for k in range(order + 1):
                if k < n_time:
                    total[:, : n_time - k] += b[:, k : k + 1] * u[:, k:]
            grad_in.copy_(total)
