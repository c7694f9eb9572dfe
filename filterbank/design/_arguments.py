"""What the design functions share: the ``Number`` type and argument documentation written once.

A docstring names a shared block on a line of its own, ``{name}``; the
decorator :func:`documented` puts the block there at that line's indent.
"""

from __future__ import annotations

from typing import Callable, Union

from torch import Tensor

Number = Union[float, int, Tensor]

_DTYPE_RULE = "float tensors in the dtype of the tensor arguments\n(float32 when all are numbers)"


def cookbook_arguments(frequency: str, takes_gain: bool) -> str:
    """The Args of an RBJ biquad design."""
    gain = "\ngain_db: (...) gain in dB (finite), broadcasting likewise." if takes_gain else ""
    return (f"{frequency}: (...) Hz, in (0, sample_rate / 2).\n"
            f"q: (...) quality factor (> 0), broadcasting against ``{frequency}``.{gain}\nsample_rate: in Hz.")


COOKBOOK_RETURNS = "``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``;\n" + _DTYPE_RULE + "."


def classic_arguments(parameter: str = "") -> str:
    """The Args of a Butterworth or Chebyshev design; ``parameter`` documents its ripple or attenuation."""
    return ("order: the prototype's order, a Python int >= 1 (band-pass doubles it).\n"
            + (parameter + "\n" if parameter else "")
            + "cutoff_hz: (...) Hz in (0, sample_rate / 2) for ``lowpass`` and\n"
              "    ``highpass``; (..., 2) ``(low, high)``, low < high, for ``bandpass``.\n"
              "sample_rate: in Hz.\nbtype: ``lowpass``, ``highpass`` or ``bandpass``.")


def classic_returns(parameter_name: str = "") -> str:
    """The Returns of a Butterworth or Chebyshev design."""
    return ("sos: (..., n_sections, 6) with ``n_sections = ceil(order / 2)``\n"
            "(``order`` for band-pass), ``sos[..., 3] == 1``;\n" + _DTYPE_RULE + ".\n"
            "The batch dimensions are those of ``cutoff_hz`` (without its last for\nband-pass)"
            + (f", broadcast against ``{parameter_name}``'s." if parameter_name else "."))


GRID_ARGUMENTS = """\
n_frequencies: grid size (>= 1), scipy's ``worN``.
whole: grid over [0, 2 pi) instead of [0, pi).
sample_rate: Hz, keyword only (scipy's ``fs``); frequencies (given and
    returned) are then in Hz, else in radians per sample."""

RESPONSE_RETURNS = """\
``(frequencies, response)``: (n_frequencies,) (or the given
``frequencies``) and complex (..., n_frequencies) (or (..., F))."""


def with_sections(function: Callable, *sections: str) -> Callable:
    """Insert paragraphs (``Args:``/``Returns:`` sections, notes) into a docstring, before its example if it has one.

    Each section is written without indentation; it is indented as the
    docstring's body (four spaces).
    """
    doc = function.__doc__.rstrip()
    text = "\n\n".join("\n".join("    " + line if line else "" for line in section.split("\n"))
                       for section in sections if section)
    at = doc.find("\n    Example:")
    function.__doc__ = (doc + "\n\n" + text + "\n    ") if at < 0 else (doc[:at] + "\n\n" + text + "\n" + doc[at:] +
                                                                          "\n    ")
    return function


def documented(**blocks: str) -> Callable:
    """Fill each ``{name}`` line of the decorated function's docstring with ``blocks[name]``."""

    def fill(function: Callable) -> Callable:
        lines = []
        for line in function.__doc__.split("\n"):
            key = line.strip()
            if key.startswith("{") and key.endswith("}") and key[1:-1] in blocks:
                indent = line[: len(line) - len(line.lstrip())]
                lines.extend(indent + part if part else "" for part in blocks[key[1:-1]].split("\n"))
            else:
                lines.append(line)
        function.__doc__ = "\n".join(lines)
        return function

    return fill
