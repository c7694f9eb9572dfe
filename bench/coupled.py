"""Coupled recurrences against what people write today, in one run.

Workloads (float32, tanh, batch 32, 1000 steps, input size 64, so that the
hidden-to-hidden recurrence dominates as it does in a recurrent layer):

* banded: hidden 1024, bandwidth 8 (17 diagonals): ``filterbank.nn.BandedRNN``
  against ``torch.nn.RNN`` of the same size (dense), a Python loop over time
  with the dense masked weight, and a loop calling ``torch.sparse.mm`` on a COO
  matrix rebuilt every step;
* sparse: hidden 4096, 1% density: ``filterbank.nn.SparseRNN`` against dense
  ``torch.nn.RNN`` and the ``torch.sparse.mm`` loop;
* cascade: ``filterbank.nn.CascadeFilterbank`` of 64 stages over x (32, 16000)
  against ``filterbank.sosfilt`` of the equivalent independent cascades (band
  k: its k + 1 resonators and the delays between them as second-order
  sections, padded to the longest with identity sections).

Each row: forward and forward+backward time (a loss that is the sum of the
output), the ratio to filterbank, the forward's ratio to writing the output
once (also for the recurrence alone, on the input term computed
beforehand), the peak memory of forward+backward (in a fresh process)
against the output's size, and the largest error of the forward against the
float64 dense loop (over the first ``--check-steps`` steps, the float64
dense reference being slow at hidden 4096). Saves JSON to
``bench/results/coupled_<device>_<date>.json``.

    python bench/coupled.py [--repeat 3] [--skip-slow] [--device cuda]

On a GPU the dense peer is cuDNN's RNN and filterbank runs the kernels of
``csrc/coupled.cu``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, measure, peak_memory_bytes, save  # noqa: E402

import filterbank  # noqa: E402
from filterbank.coupled import banded_recurrence, sparse_recurrence  # noqa: E402
from filterbank.kernels import _memory  # noqa: E402
from filterbank.nn import BandedRNN, CascadeFilterbank, SparseRNN  # noqa: E402

BATCH, STEPS, INPUT = 32, 1000, 64
DEVICE = "cpu"  # set by --device


def _layer(kind: str, hidden: int):
    torch.manual_seed(0)
    if kind == "banded":
        return BandedRNN(INPUT, hidden, bandwidth=8, batch_first=True).to(DEVICE)
    return SparseRNN(INPUT, hidden, density=0.01, batch_first=True).to(DEVICE)


def _dense_twin(layer, dtype=torch.float32):
    """torch.nn.RNN with ``layer``'s weights (the structured matrix written out dense)."""
    twin = torch.nn.RNN(layer.input_size, layer.hidden_size, batch_first=True, dtype=dtype, device=DEVICE)
    with torch.no_grad():
        twin.weight_ih_l0.copy_(layer.weight_ih_l0)
        twin.bias_ih_l0.copy_(layer.bias_ih_l0)
        twin.bias_hh_l0.copy_(layer.bias_hh_l0)
        twin.weight_hh_l0.copy_(layer.weight_hh_dense())
    return twin


class MaskedDenseLoop(torch.nn.Module):
    """What people write: a loop over time with a dense weight times a fixed mask."""

    def __init__(self, layer):
        super().__init__()
        dense = layer.weight_hh_dense().detach()
        self.register_buffer("weight_ih", layer.weight_ih_l0.detach().clone())
        self.register_buffer("bias", (layer.bias_ih_l0 + layer.bias_hh_l0).detach())
        self.weight_hh = torch.nn.Parameter(dense.clone())
        self.register_buffer("mask", dense != 0)

    def forward(self, x):
        u = x @ self.weight_ih.t() + self.bias
        weight = (self.weight_hh * self.mask).t()
        h, outputs = u.new_zeros(u.shape[0], u.shape[-1]), []
        for t in range(u.shape[1]):
            h = torch.tanh(u[:, t] + h @ weight)
            outputs.append(h)
        return torch.stack(outputs, 1)


class SparseMmLoop(torch.nn.Module):
    """What people write: a loop over time calling torch.sparse.mm on a COO matrix rebuilt every step."""

    def __init__(self, layer):
        super().__init__()
        dense = layer.weight_hh_dense().detach()
        self.register_buffer("indices", dense.nonzero().t().contiguous())
        self.values = torch.nn.Parameter(dense[dense != 0].clone())
        self.register_buffer("weight_ih", layer.weight_ih_l0.detach().clone())
        self.register_buffer("bias", (layer.bias_ih_l0 + layer.bias_hh_l0).detach())
        self.size = dense.shape

    def forward(self, x):
        u = x @ self.weight_ih.t() + self.bias
        h, outputs = u.new_zeros(u.shape[0], u.shape[-1]), []
        for t in range(u.shape[1]):
            matrix = torch.sparse_coo_tensor(self.indices, self.values, self.size)
            h = torch.tanh(u[:, t] + torch.sparse.mm(matrix, h.t()).t())
            outputs.append(h)
        return torch.stack(outputs, 1)


def _output(module, x):
    result = module(x)
    return result[0] if isinstance(result, tuple) else result


def _reference64(layer, x, steps):
    """The float64 dense loop over the first ``steps`` steps."""
    twin = _dense_twin(layer, torch.float64)
    with torch.no_grad():
        return twin(x[:, :steps].double())[0]


def _peak_in_fresh_process(kind: str, hidden: int) -> int:
    done = subprocess.run([sys.executable, __file__, "--peak-of", kind, "--hidden", str(hidden), "--device", DEVICE],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def _training_step(layer, x):
    def step():
        layer.zero_grad(set_to_none=True)
        _output(layer, x).sum().backward()

    return step


def _write_floor(shape: tuple[int, ...], repeat: int) -> float:
    """Milliseconds to write a float32 tensor of ``shape`` once (into memory already mapped)."""
    if DEVICE == "cpu":
        output = _memory.empty(shape, torch.float32).fill_(0)
    else:
        output = torch.zeros(shape, device=DEVICE)
    return measure(lambda: output.fill_(1.0), DEVICE, repeat)["median_ms"]


def _workload(kind: str, hidden: int, peers: dict, repeat: int, slow_repeat: int, check_steps: int) -> dict:
    layer = _layer(kind, hidden)
    x = torch.randn(BATCH, STEPS, INPUT, device=DEVICE)
    truth = _reference64(layer, x, check_steps)
    output_bytes = BATCH * STEPS * hidden * 4
    floor = _write_floor((BATCH, STEPS, hidden), repeat)
    rows = {}
    for name, module in [("filterbank " + type(layer).__name__, layer)] + list(peers.items()):
        times = repeat if module is layer else slow_repeat

        def forward(module=module):
            with torch.no_grad():
                return _output(module, x)

        row = {"forward": measure(forward, DEVICE, times), "forward+backward": measure(_training_step(module, x),
                                                                                         DEVICE, times)}
        with torch.no_grad():
            check = _output(module, x[:, :check_steps])
        row["max_error"] = float((check.double() - truth).abs().max())
        row["forward_x_floor"] = row["forward"]["median_ms"] / floor
        rows[name] = row
        print(f"  measured {name}: forward {row['forward']['median_ms']:.1f} ms, forward+backward "
              f"{row['forward+backward']['median_ms']:.1f} ms", file=sys.stderr)
    ours = rows["filterbank " + type(layer).__name__]
    for row in rows.values():
        for direction in ("forward", "forward+backward"):
            row[direction]["x_filterbank"] = row[direction]["median_ms"] / ours[direction]["median_ms"]
    alone = _recurrence_alone(layer, x, repeat)
    alone["forward_x_floor"] = alone["forward"]["median_ms"] / floor
    return {"hidden": hidden, "rows": rows, "recurrence_alone": alone, "floor_ms": floor,
            "output_bytes": output_bytes}


def _recurrence_alone(layer, x, repeat: int) -> dict:
    """The layer's recurrence by itself (``filterbank.coupled`` on the input term computed beforehand)."""
    with torch.no_grad():
        u = (x @ layer.weight_ih_l0.t() + layer.bias_ih_l0 + layer.bias_hh_l0).contiguous()
    matrix = layer.weight_hh_l0
    if isinstance(layer, BandedRNN):
        def run(u, weights):
            return banded_recurrence(u, weights, layer.bandwidths, time_axis=-2)
    else:
        def run(u, weights):
            return sparse_recurrence(u, (layer.crow_l0, layer.col_l0, weights), time_axis=-2)
    grad = torch.ones_like(u)

    def forward():
        with torch.no_grad():
            run(u, matrix)

    def training():
        matrix.grad = None
        run(u, matrix).backward(grad)

    return {"forward": measure(forward, DEVICE, repeat), "forward+backward": measure(training, DEVICE, repeat)}


def equivalent_sos(bank: CascadeFilterbank) -> torch.Tensor:
    """(n_filters, sections, 6) float64: band k of ``bank`` as an independent cascade of sections.

    Band k is ``c_k z^-k prod_{j<=k} g_j z^-1 / (1 - 2 r_j cos(theta_j) z^-1 + r_j^2 z^-2)``
    (``filterbank.design.cascade``): k + 1 resonators, then z^-k as sections of
    z^-2 (and one of z^-1), the read-out gain in the first section.
    """
    recurrence = bank.recurrence()
    band = recurrence.band.detach().double()
    gain, a1, a2 = recurrence.input[0].detach().double(), band[0::2, 1], band[0::2, 2]
    gains = torch.cat([gain.reshape(1), band[2::2, 0]])
    n_filters = bank.n_filters
    n_sections = n_filters + (n_filters - 1 + 1) // 2
    sos = torch.zeros(n_filters, n_sections, 6, dtype=torch.float64, device=band.device)
    sos[..., 0] = 1.0
    sos[..., 3] = 1.0  # identity sections
    for k in range(n_filters):
        for j in range(k + 1):
            sos[k, j] = torch.stack([gains.new_zeros(()), gains[j], gains.new_zeros(()), gains.new_ones(()), -a1[j],
                                     -a2[j]])
        for d in range(k // 2):
            sos[k, k + 1 + d] = sos.new_tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
        if k % 2:
            sos[k, k + 1 + k // 2] = sos.new_tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
        sos[k, 0, :3] *= recurrence.readout[k].detach().double()
    return sos


def _cascade_workload(repeat: int, slow_repeat: int) -> dict:
    torch.manual_seed(0)
    bank = CascadeFilterbank(64, 16000).to(DEVICE)
    x = torch.randn(32, 16000, device=DEVICE)
    sos = equivalent_sos(bank).to(DEVICE)
    sos32 = sos.float().requires_grad_()
    with torch.no_grad():
        truth = filterbank.sosfilt(sos, x[:4].double().unsqueeze(-2))
        errors = {"filterbank CascadeFilterbank": float((bank(x[:4]).double() - truth).abs().max()),
                  "sosfilt of the equivalent cascades": float(
                      (filterbank.sosfilt(sos32, x[:4].unsqueeze(-2)).double() - truth).abs().max())}

    def cascade_forward():
        with torch.no_grad():
            bank(x)

    def cascade_training():
        bank.zero_grad(set_to_none=True)
        bank(x).sum().backward()

    def sos_forward():
        with torch.no_grad():
            filterbank.sosfilt(sos32, x.unsqueeze(-2))

    def sos_training():
        sos32.grad = None
        filterbank.sosfilt(sos32, x.unsqueeze(-2)).sum().backward()

    rows = {"filterbank CascadeFilterbank": {"forward": measure(cascade_forward, DEVICE, repeat),
                                             "forward+backward": measure(cascade_training, DEVICE, repeat)},
            "sosfilt of the equivalent cascades": {"forward": measure(sos_forward, DEVICE, slow_repeat),
                                                   "forward+backward": measure(sos_training, DEVICE, slow_repeat)}}
    floor = _write_floor((32, 64, 16000), repeat)
    ours = rows["filterbank CascadeFilterbank"]
    for name, row in rows.items():
        row["max_error"] = errors[name]
        row["forward_x_floor"] = row["forward"]["median_ms"] / floor
        for direction in ("forward", "forward+backward"):
            row[direction]["x_filterbank"] = row[direction]["median_ms"] / ours[direction]["median_ms"]
    return {"stages": 64, "x": [32, 16000], "sections_per_band": sos.shape[1], "rows": rows, "floor_ms": floor,
            "output_bytes": 32 * 64 * 16000 * 4}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slow-repeat", type=int, default=2, help="runs of the slow peers (Python loops, dense)")
    parser.add_argument("--check-steps", type=int, default=100)
    parser.add_argument("--skip-slow", action="store_true", help="leave out the hidden-4096 dense and loop peers")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--peak-of", choices=("banded", "sparse"), help=argparse.SUPPRESS)
    parser.add_argument("--hidden", type=int, default=1024, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if args.peak_of:
        layer = _layer(args.peak_of, args.hidden)
        step = _training_step(layer, torch.randn(BATCH, STEPS, INPUT, device=DEVICE))
        _training_step(layer, torch.randn(2, 10, INPUT, device=DEVICE))()  # compiles, allocates little
        print(peak_memory_bytes(step, DEVICE))
        return {}

    banded = _layer("banded", 1024)
    workloads = {"banded": _workload("banded", 1024, {
        "torch.nn.RNN (dense)": _dense_twin(banded), "masked dense loop": MaskedDenseLoop(banded),
        "torch.sparse.mm loop": SparseMmLoop(banded)}, args.repeat, args.slow_repeat, args.check_steps)}
    sparse = _layer("sparse", 4096)
    peers = {} if args.skip_slow else {"torch.nn.RNN (dense)": _dense_twin(sparse),
                                       "torch.sparse.mm loop": SparseMmLoop(sparse)}
    workloads["sparse"] = _workload("sparse", 4096, peers, args.repeat, args.slow_repeat, args.check_steps)
    for kind, hidden in (("banded", 1024), ("sparse", 4096)):
        workloads[kind]["peak_memory_bytes"] = _peak_in_fresh_process(kind, hidden)
    workloads["cascade"] = _cascade_workload(args.repeat, args.slow_repeat)

    record = environment(DEVICE)
    record.update({"benchmark": "coupled", "device": DEVICE,
                   "workload": {"batch": BATCH, "steps": STEPS, "input_size": INPUT, "nonlinearity": "tanh",
                                "banded": {"hidden": 1024, "bandwidth": 8},
                                "sparse": {"hidden": 4096, "density": 0.01},
                                "cascade": {"stages": 64, "x": [32, 16000], "sample_rate": 16000}},
                   "workloads": workloads})
    for kind, result in workloads.items():
        size = f"hidden {result['hidden']}" if "hidden" in result else f"{result['stages']} stages"
        print(f"\n{kind}, {size}: writing the output once {result['floor_ms']:.1f} ms")
        print(f"{'':34} {'fwd ms':>9} {'x ours':>8} {'x floor':>8} {'fwd+bwd ms':>11} {'x ours':>8} {'max err':>9}")
        for name, row in result["rows"].items():
            forward, both = row["forward"], row["forward+backward"]
            print(f"{name:34} {forward['median_ms']:9.1f} {forward['x_filterbank']:8.1f} "
                  f"{row['forward_x_floor']:8.2f} {both['median_ms']:11.1f} {both['x_filterbank']:8.1f} "
                  f"{row['max_error']:9.1e}")
        if "recurrence_alone" in result:
            alone = result["recurrence_alone"]
            print(f"{'the recurrence alone':34} {alone['forward']['median_ms']:9.1f} {'':8} "
                  f"{alone['forward_x_floor']:8.2f} {alone['forward+backward']['median_ms']:11.1f}")
        peak = result.get("peak_memory_bytes")
        if peak is None:
            continue
        print(f"peak memory of forward+backward: {peak / 2**20:.0f} MiB = {peak / result['output_bytes']:.2f}x "
              "the output")
    if not args.no_save:
        print(f"saved {save('coupled', DEVICE, record)}")
    return record


if __name__ == "__main__":
    main()
