"""``filterbank response``: draw the magnitude responses of a bank, or of a designed filter, to a PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._files import write_or_fail
from ._options import (
    add_bank_options, add_design_options, check_bank_options, check_design_options, design_sos, design_title,
    make_bank, positive_int,
)

__all__ = ["add_parser"]


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("response", help="draw magnitude responses to a PNG")
    parser.add_argument("--out", required=True, help="PNG file")
    parser.add_argument("--sample-rate", type=positive_int, default=16000)
    add_bank_options(parser, n_filters=40)
    parser.add_argument("--linear", action="store_true", help="linear frequency axis")
    add_design_options(parser, required=False)
    parser.set_defaults(check=check, run=run)
    return parser


def check(args, parser: argparse.ArgumentParser) -> None:
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out {out} is a folder; give the PNG file to write")
    if args.design is None and args.sos is None:
        check_bank_options(args, parser, args.sample_rate)
    check_design_options(args, parser, args.sample_rate)


class _Designed:
    """One designed cascade, drawn as a bank of one filter."""

    def __init__(self, sos, sample_rate: int):
        self.sos, self.sample_rate = sos, float(sample_rate)

    def responses(self, n_frequencies: int):
        from .. import design

        frequencies, response = design.sosfreqz(self.sos.unsqueeze(0), n_frequencies, sample_rate=self.sample_rate)
        return frequencies, response.abs()


def run(args) -> int:
    import torch

    from ..plotting import plot_responses

    if args.design is not None or args.sos is not None:
        bank, title = _Designed(design_sos(args, args.sample_rate), args.sample_rate), design_title(args)
    else:
        bank = make_bank(args.kind, args.n_filters, args.sample_rate, args.scale, args.f_min, args.f_max)
        title = None
    try:
        import matplotlib
    except ImportError:
        print("error: filterbank response draws with matplotlib, which is not installed here (pip install "
              "matplotlib, or filterbank[demo])", file=sys.stderr)
        return 1
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4))
    with torch.no_grad():
        plot_responses(bank, axis, log_frequency=not args.linear, title=title)
    figure.tight_layout()
    out = Path(args.out)
    failure = write_or_fail(out, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    print(f"drawn: {out}")
    return 0
