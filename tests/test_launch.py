"""The CPU kernels' thread launcher and lean compilation (filterbank/kernels/_launch.py)."""

from __future__ import annotations

import multiprocessing
import os

import numba
import numpy as np
import pytest
import torch
from numba.core import config

from filterbank.kernels import _launch, cpu


@pytest.mark.parametrize("weights, n_parts", [
    ([64, 64, 2], 2), ([2, 64, 64], 2), ([1] * 10, 3), ([64], 2), ([5], 1), ([], 2), ([40] * 8, 2),
    ([1, 1, 1, 100], 2), ([3, 1, 4, 1, 5, 9, 2, 6], 4), ([1] * 7, 16),
])
def test_split_covers_every_item_once_in_balanced_contiguous_ranges(weights, n_parts):
    weights = np.array(weights, dtype=np.int64)
    ranges = _launch.split(weights, n_parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(weights)
    assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(ranges[:-1], ranges[1:])), "contiguous"
    assert len(ranges) <= max(1, min(n_parts, len(weights)))
    if len(weights):
        assert all(hi > lo for lo, hi in ranges), "no empty range"
        # No range holds more than its share plus one item's weight.
        loads = [weights[lo:hi].sum() for lo, hi in ranges]
        assert max(loads) <= weights.sum() / len(ranges) + weights.max()


def test_split_of_a_big_row_keeps_the_two_full_tiles_apart():
    assert _launch.split(np.array([64, 64, 2]), 2) == [(0, 1), (1, 3)]


def _problem(dtype):
    generator = torch.Generator().manual_seed(3)
    n_rows, n_filters, n_time = 3, 40, 700
    x = torch.randn(n_rows, n_time, generator=generator, dtype=dtype)
    x_index = torch.arange(n_rows).repeat_interleave(n_filters)
    poles = 0.9 + 0.09 * torch.rand(n_rows * n_filters, 1, generator=generator, dtype=dtype)
    a = torch.stack([torch.ones_like(poles), -2 * poles * 0.9, poles ** 2], -1)
    b = torch.randn(n_rows * n_filters, 1, 3, generator=generator, dtype=dtype)
    zi = torch.randn(n_rows * n_filters, 1, 2, generator=generator, dtype=dtype)
    grad_y = torch.randn(n_rows * n_filters, n_time, generator=generator, dtype=dtype)
    return x, x_index, b, a, zi, grad_y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_do_not_depend_on_the_number_of_threads(dtype):
    # Tiles are independent: any split across threads gives the same bits.
    x, x_index, b, a, zi, grad_y = _problem(dtype)
    grad_zf = torch.zeros_like(zi)
    threads = numba.get_num_threads()
    results = []
    try:
        for n_threads in sorted({1, threads}):
            numba.set_num_threads(n_threads)
            results.append((cpu.iir_cascade(x, x_index, b, a, zi),
                            cpu.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)))
    finally:
        numba.set_num_threads(threads)
    for (forward, backward) in results[1:]:
        for got, first in zip(forward + backward, results[0][0] + results[0][1]):
            assert torch.equal(got, first)


def test_zero_and_nonzero_final_state_gradients_take_their_own_variants_and_agree():
    # grad_zf all zero takes the kernel variant without the zf code; a tiny
    # non-zero one the full variant, whose other gradients must then barely move.
    x, x_index, b, a, zi, grad_y = _problem(torch.float64)
    zero = cpu.iir_cascade_backward(grad_y, torch.zeros_like(zi), x, x_index, b, a, zi)
    tiny = torch.zeros_like(zi)
    tiny[0, 0, 0] = 1e-300
    full = cpu.iir_cascade_backward(grad_y, tiny, x, x_index, b, a, zi)
    for got, expected in zip(full, zero):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-200)


def _filter_in_child(queue):
    x, x_index, b, a, zi, _ = _problem(torch.float64)
    # numpy's sum: torch's OpenMP threads do not survive a fork (torch's own limitation).
    queue.put(float(cpu.iir_cascade(x, x_index, b, a, zi)[0].numpy().sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_the_threaded_kernels():
    # The parent's pool threads do not exist in a forked child (DataLoader
    # workers, the command line's workers): the child must start its own.
    x, x_index, b, a, zi, _ = _problem(torch.float64)
    expected = float(cpu.iir_cascade(x, x_index, b, a, zi)[0].numpy().sum())   # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_filter_in_child, args=(queue,))
    child.start()
    try:
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=60)
        child.kill()
    assert child.exitcode == 0 and got == expected


def test_lean_compile_sets_and_restores_the_options(monkeypatch):
    monkeypatch.delenv("NUMBA_OPT", raising=False)
    before = (int(config.OPT), config.LOOP_VECTORIZE, config.SLP_VECTORIZE)
    with _launch.lean_compile():
        assert (int(config.OPT), config.LOOP_VECTORIZE, config.SLP_VECTORIZE) == (1, False, False)
    assert (int(config.OPT), config.LOOP_VECTORIZE, config.SLP_VECTORIZE) == before


def test_lean_compile_honours_numba_opt(monkeypatch):
    monkeypatch.setenv("NUMBA_OPT", "3")
    before = (int(config.OPT), config.LOOP_VECTORIZE, config.SLP_VECTORIZE)
    with _launch.lean_compile():
        assert (int(config.OPT), config.LOOP_VECTORIZE, config.SLP_VECTORIZE) == before
