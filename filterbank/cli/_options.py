"""Options more than one subcommand takes, with their choices from the library's own registries.

* a bank: ``--n-filters``, ``--scale`` (``filterbank.design.SCALES``), ``--f-min``,
  ``--f-max``, ``--kind`` (the biquad kinds of ``filterbank.design.BIQUADS``
  without a gain, ``gammatone``, or ``cascade``: a ``CascadeFilterbank``);
* a designed filter: ``--design`` (the families of ``filterbank.design.CLASSIC``,
  the kinds of ``filterbank.design.BIQUADS``, or ``gammatone``) with its
  parameters, or ``--sos`` (a file of sections);
* argparse types that name what they expected.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import _checks, design

__all__ = ["positive_int", "non_negative_int", "BANK_KINDS", "DESIGNS", "add_bank_options", "check_bank_options",
           "make_bank",
           "add_design_options", "check_design_options", "design_sos", "design_title", "read_sos", "check_device"]

GAMMATONE = "gammatone"
CASCADE = "cascade"
BANK_KINDS = tuple(kind for kind, entry in design.BIQUADS.items() if not entry.takes_gain) + (GAMMATONE, CASCADE)
DESIGNS = tuple(design.CLASSIC) + tuple(design.BIQUADS) + (GAMMATONE,)
# The option that gives each classic family's extra argument.
_FAMILY_OPTIONS = {"ripple_db": "ripple", "attenuation_db": "attenuation"}


def _int_at_least(minimum: int, expected: str):
    """An argparse type: an int >= ``minimum``, or a usage error saying what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {value}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


# --------------------------------------------------------------------------
# A bank.


def add_bank_options(parser: argparse.ArgumentParser, n_filters: int = 64) -> None:
    parser.add_argument("--n-filters", type=positive_int, default=n_filters, help=f"bands (default {n_filters})")
    parser.add_argument("--scale", default="mel", choices=design.SCALES,
                        help="spacing of the centre frequencies (default mel)")
    parser.add_argument("--f-min", type=float, default=None, help="lowest centre frequency, Hz (default 30)")
    parser.add_argument("--f-max", type=float, default=None, help="highest centre frequency, Hz (default 0.95 Nyquist)")
    parser.add_argument("--kind", default="bandpass", choices=BANK_KINDS,
                        help="biquad kind, gammatone (4th-order gammatones: four biquads each) or cascade (a cascade "
                             "of resonators, each fed by the one before, highest frequency first) (default bandpass)")


def check_bank_options(args, parser: argparse.ArgumentParser, sample_rate=None) -> None:
    """The bank options, before any work: frequencies finite and positive, --f-min below --f-max; with a
    known ``sample_rate``, the bank itself (every rule of the library's)."""
    try:
        for name in ("f_min", "f_max"):
            if getattr(args, name) is not None:
                _checks.number("--" + name.replace("_", "-"), getattr(args, name), 0.0, unit="Hz")
        if args.f_min is not None and args.f_max is not None and not args.f_min < args.f_max:
            raise ValueError(f"--f-min must be below --f-max; got {args.f_min:g} and {args.f_max:g} Hz")
        if sample_rate is not None:
            make_bank(args.kind, args.n_filters, sample_rate, args.scale, args.f_min, args.f_max)
    except ValueError as error:
        parser.error(str(error) if sample_rate is None else f"at {sample_rate} Hz: {error}")


def make_bank(kind: str, n_filters: int, sample_rate: int, scale: str, f_min, f_max):
    """The fixed (nothing learnt) filterbank module the bank options describe."""
    from ..nn import BiquadFilterbank, CascadeFilterbank, GammatoneFilterbank

    if kind == GAMMATONE:
        return GammatoneFilterbank(n_filters, sample_rate, scale=scale, f_min=f_min, f_max=f_max, learn=())
    if kind == CASCADE:
        return CascadeFilterbank(n_filters, sample_rate, scale=scale, f_min=f_min, f_max=f_max, learn=())
    return BiquadFilterbank(n_filters, sample_rate, kind=kind, scale=scale, f_min=f_min, f_max=f_max, learn=())


# --------------------------------------------------------------------------
# A designed filter.


def add_design_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("the filter" + ("" if required else " (instead of a bank)"))
    group.add_argument("--design", choices=DESIGNS, default=None,
                       help="a classic family (with --btype and --order), a cookbook biquad (with --q, and --gain for "
                            "peaking and the shelves) or a gammatone")
    group.add_argument("--btype", choices=design.BTYPES, default="lowpass", help="for " + "/".join(design.CLASSIC))
    group.add_argument("--cutoff", type=float, nargs="+", help="Hz: one value, or low and high for bandpass")
    group.add_argument("--order", type=positive_int, default=4, help="for " + "/".join(design.CLASSIC) + " (default 4)")
    group.add_argument("--ripple", type=float, default=1.0, help="cheby1 pass-band ripple, dB (default 1)")
    group.add_argument("--attenuation", type=float, default=40.0, help="cheby2 stop-band attenuation, dB (default 40)")
    group.add_argument("--q", type=float, default=0.707, help="for the cookbook biquads (default 0.707)")
    group.add_argument("--gain", type=float, default=0.0, help="dB, for peaking and the shelves")
    group.add_argument("--sos", default=None, help="a .npy/.txt/.csv of rows [b0 b1 b2 a0 a1 a2] instead of --design")


def check_design_options(args, parser: argparse.ArgumentParser, sample_rate=None) -> None:
    """The filter options, before any work: at most one of --design and --sos; a --sos file that reads and
    is stable; --design's parameters in range, with as many --cutoff values as it needs; with a known
    ``sample_rate``, the design itself."""
    if args.design is not None and args.sos is not None:
        parser.error("give at most one of --design and --sos")
    try:
        # The file is read once, here; the work uses what was read.
        args.sos_sections = read_sos(args.sos) if args.sos is not None else None
        if args.design is None:
            return
        if not args.cutoff:
            raise ValueError(f"--design {args.design} needs --cutoff")
        classic = args.design in design.CLASSIC
        needed = 2 if classic and args.btype == "bandpass" else 1
        if len(args.cutoff) != needed:
            raise ValueError(f"--design {args.design}" + (f" --btype {args.btype}" if classic else "") + f" needs "
                             f"{needed} --cutoff value" + ("s (low high)" if needed == 2 else "") +
                             f"; got {len(args.cutoff)}")
        for value in args.cutoff:
            _checks.number("--cutoff", value, 0.0, unit="Hz")
        if needed == 2 and not args.cutoff[0] < args.cutoff[1]:
            raise ValueError(f"--cutoff low must be below high; got {args.cutoff[0]:g} and {args.cutoff[1]:g} Hz")
        if classic and design.CLASSIC[args.design].parameter is not None:
            option = _FAMILY_OPTIONS[design.CLASSIC[args.design].parameter]
            _checks.number("--" + option, getattr(args, option), 0.0, unit="dB")
        elif args.design in design.BIQUADS:
            _checks.number("--q", args.q, 0.0)
            if design.BIQUADS[args.design].takes_gain:
                _checks.number("--gain", args.gain, unit="dB")
        if sample_rate is not None:
            try:
                design_sos(args, sample_rate)
            except ValueError as error:
                raise ValueError(f"at {sample_rate} Hz: {error}") from None
    except ValueError as error:
        parser.error(str(error))


def read_sos(name: str):
    """The cascade in an --sos file (.npy, or text/.csv rows): (n_sections, 6) float64, finite and stable.

    Raises ValueError naming the file and what is wrong with it.
    """
    import numpy as np
    import torch

    path = Path(name)
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix ==
                                                                      ".csv" else None, ndmin=2)
        values = np.asarray(values, dtype=np.float64)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"--sos {path}: cannot read it: {error}") from None
    if values.ndim != 2 or values.shape[-1] != 6 or values.shape[0] == 0:
        raise ValueError(f"--sos {path}: expected rows of 6 coefficients [b0 b1 b2 a0 a1 a2]; got shape "
                         f"{tuple(values.shape)}")
    for row, section in enumerate(values):
        if not np.isfinite(section).all():
            raise ValueError(f"--sos {path}: row {row} holds non-finite coefficients {section.tolist()}")
        if section[3] == 0:
            raise ValueError(f"--sos {path}: row {row} has a0 = 0 (the fourth coefficient divides the section)")
        radius = float(np.abs(np.roots(section[3:])).max()) if np.any(section[4:]) else 0.0
        if radius >= 1:
            raise ValueError(f"--sos {path}: row {row} is unstable: a pole at radius {radius:.4g} (>= 1), so its "
                             "output grows without bound")
    return torch.from_numpy(values)


def design_sos(args, sample_rate: int):
    """The cascade of --design (or the --sos file's) at ``sample_rate``: (n_sections, 6) float64.

    The options were checked (:func:`check_design_options`, which read the --sos file) before.
    """
    import torch

    if args.sos is not None:
        return args.sos_sections
    cutoff = torch.tensor(args.cutoff, dtype=torch.float64)
    if args.design in design.CLASSIC:
        family = design.CLASSIC[args.design]
        extra = () if family.parameter is None else (getattr(args, _FAMILY_OPTIONS[family.parameter]),)
        edges = cutoff if args.btype == "bandpass" else cutoff[0]
        return family.function(args.order, *extra, edges, sample_rate, btype=args.btype)
    if args.design == GAMMATONE:
        return design.gammatone_sos(cutoff[0], sample_rate)
    biquad = design.BIQUADS[args.design]
    gain = (args.gain,) if biquad.takes_gain else ()
    b, a = biquad.function(cutoff[0], args.q, *gain, sample_rate)
    return torch.cat([b, a]).unsqueeze(0)


def design_title(args) -> str:
    """What --design or --sos names, for a figure."""
    if args.design is None:
        return Path(args.sos).name
    return args.design + (f" {args.btype}" if args.design in design.CLASSIC else "")


# --------------------------------------------------------------------------
# Devices.


def check_device(args, parser: argparse.ArgumentParser) -> None:
    """``--device`` names a device that is here: cpu, or cuda[:index] with that GPU present."""
    if args.device == "cpu":
        return
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device must be cpu or cuda[:index]; got {args.device!r}")
    if device.type != "cuda" or not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {args.device}: " + ("no CUDA device is available here" if device.type == "cuda"
                                                     else "expected cpu or cuda[:index]"))
