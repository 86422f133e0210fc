"""Recompute a Nanda run's key-frequency share from its snapshots, without the lab.

    pip install numpy safetensors
    python docs/examples/key_share.py sweeps/<name>/jobs/<job id>

Reads every snapshot of the run (`[train] snapshots = "log"`), takes the token embedding's rows
of the residues 0..p-1, splits them into Fourier components over the residue and prints the
share of the five strongest non-constant frequencies (Nanda et al. 2023's key frequencies)
beside the value the lab recorded at that step (`fourier.key_share` in evals.jsonl, the same
column in curves.csv). Exits 1 if any differs by more than 1e-4.
"""

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

KEYS = 5  # key frequencies kept (crates/train/src/fourier.rs)


def key_share(wte: np.ndarray, p: int) -> tuple[float, list[int]]:
    """Share of the embedding's non-constant squared norm in its KEYS strongest frequencies."""
    rows = wte[:p].astype(np.float64)  # [p, d]: one row per residue
    # |rfft|^2 at frequency k is the squared norm of the cos(2 pi k a / p) and
    # sin(2 pi k a / p) components together, k = 0..(p-1)/2.
    norms = (np.abs(np.fft.rfft(rows, axis=0)) ** 2).sum(axis=1)
    nonconstant = norms[1:]
    keys = np.argsort(-nonconstant)[:KEYS]
    return float(nonconstant[keys].sum() / nonconstant.sum()), [int(k) + 1 for k in keys]


def main(run: Path) -> int:
    spec = tomllib.loads((run / "spec.toml").read_text())
    p = spec["task"]["p"]
    recorded = {}
    for line in (run / "evals.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "fourier.key_share" in row:
            recorded[row["step"]] = row["fourier.key_share"]
    worst = 0.0
    print(f"{'step':>6} {'from weights':>13} {'recorded':>10} {'diff':>9}  key frequencies")
    for path in sorted((run / "snapshots").glob("step-*.safetensors")):
        with safe_open(path, framework="numpy") as f:
            step = int(f.metadata()["step"])
        wte = load_file(path)["wte"]  # [vocab, d_model]
        share, keys = key_share(wte, p)
        if step not in recorded:
            print(f"{step:>6} {share:>13.6f} {'-':>10} {'-':>9}  {keys}")
            continue
        diff = abs(share - recorded[step])
        worst = max(worst, diff)
        print(f"{step:>6} {share:>13.6f} {recorded[step]:>10.6f} {diff:>9.1e}  {keys}")
    print(f"largest difference: {worst:.1e}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
