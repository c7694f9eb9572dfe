"""Draw the features that ``filterbank extract`` wrote: one panel per file, from its manifest.

    filterbank extract data/speech --out out/features
    python demos/draw_features.py out/features [--png out/features.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the --out folder of filterbank extract (holds manifest.jsonl)")
    parser.add_argument("--png", type=Path, default=None, help="PNG to write (default: <folder>.png)")
    args = parser.parse_args(argv)
    manifest = args.folder / "manifest.jsonl"
    if not manifest.is_file():
        parser.error(f"{manifest} does not exist: run filterbank extract with --out {args.folder} first")
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    records = [r for r in records if r["status"] in ("ok", "skipped") and Path(r.get("output", "")).is_file()]
    if not records:
        parser.error(f"{manifest} lists no features that exist")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(records), 1, figsize=(9, 2.2 * len(records)), squeeze=False)
    for axis, record in zip(axes[:, 0], records):
        features = np.load(record["output"])            # (n_filters, frames), log energies
        if features.ndim == 3:                           # (channels, n_filters, frames): the first channel
            features = features[0]
        top = float(features.max())
        image = axis.imshow(features, origin="lower", aspect="auto", cmap="magma", vmin=top - 14, vmax=top,
                            extent=(0, record["seconds"], 0, features.shape[0]))
        axis.set_ylabel("band")
        axis.set_title(f"{Path(record['input']).name} ({record.get('sample_rate', '?')} Hz)", fontsize=9)
        figure.colorbar(image, ax=axis, label="log energy")
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    png = args.png or args.folder.with_suffix(".png")
    figure.savefig(png, dpi=100)
    print(f"drawn: {png} ({len(records)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
