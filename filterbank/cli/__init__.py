"""The ``filterbank`` command: feature extraction, filtering, responses and a benchmark for audio files.

    filterbank extract data/speech --out out/features            # features per file + manifest.jsonl
    filterbank filter song.flac --out out --design butter --btype lowpass --cutoff 3000 --order 6
    filterbank response --out bank.png --n-filters 40 --scale erb
    filterbank bench                                              # lfilter's speed here
    filterbank compile                                            # the CPU kernels into numba's cache, now

Also ``python -m filterbank``. ``filterbank <command> --help`` lists each
command's options. Unreadable, empty or corrupt inputs are reported with their
path and reason and the rest are processed; the exit code is then 1 with a
summary. Bad options are usage errors (exit code 2).

A module per subcommand (``extract``, ``filter``, ``response``, ``bench``, ``compile``),
each with its parser (``add_parser``), its checks (``check``, run before any
work) and its work (``run``); ``_options`` holds the options several share,
``_files`` the handling of inputs and outputs.
"""

from __future__ import annotations

import argparse
from typing import Optional

from . import bench, extract, response
from . import compile as compile_
from . import filter as filter_  # (the modules' names are the subcommands')
from ._files import AUDIO_SUFFIXES, find_audio, output_paths, shard

__all__ = ["main", "build_parser", "find_audio", "output_paths", "shard", "AUDIO_SUFFIXES"]

_COMMANDS = (extract, filter_, response, bench, compile_)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="filterbank", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command in _COMMANDS:
        subparser = command.add_parser(commands)
        subparser.set_defaults(subparser=subparser)  # usage errors print the subcommand's usage
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.check(args, args.subparser)
    try:
        return args.run(args)
    except ValueError as error:  # a bad combination of options found while designing
        args.subparser.error(str(error))
