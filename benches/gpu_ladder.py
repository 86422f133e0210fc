"""The GPU ladder table of `benches/gpu-check.sh`: elab on wgpu beside the PyTorch twin on CUDA.

    python3 benches/gpu_ladder.py ELAB.jsonl TORCH.jsonl [PEAK.jsonl]

ELAB.jsonl: `elab bench --backend wgpu --json` lines; TORCH.jsonl: `benches/torch_twin.py
--modes eager,compile` lines (a `mode` each); PEAK.jsonl: `benches/matmul_peak.py` lines. Any
file may be missing or short (a rung that timed out): its cells read "-". Prints the measured
peaks, then a markdown table, one row per rung in the order first seen. Speed columns are torch ms / elab ms (above
1: elab is faster). FLOP/s are the model's (elab's count: 6N + attention per token, every
position), the same for both programs, so the torch columns are elab's count over torch's time.
"""

import argparse
import json
import os

from compare import fmt, ratio


def rows(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        out = []
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut short by a stopped process
        return out


def peak_tflops(peaks, precision="float32"):
    return next((p["tflops"] for p in peaks if p.get("precision") == precision), None)


def peak_line(peaks):
    if not peaks:
        return "Peak: not measured (no PyTorch with a GPU); no shares of peak.\n"
    n = peaks[0].get("n", "?")
    rates = ", ".join(f"{p['precision']} {p['tflops']:g}" for p in peaks)
    return (
        f"Peak, a {n} x {n} x {n} PyTorch matmul on this device, TFLOP/s: {rates}. "
        "The shares below are of the float32 figure: elab trains in float32 without tensor "
        "cores, and the twin's float32 matmuls stay float32 (no TF32).\n"
    )


def share(gflops, peak_tflops):
    """GFLOP/s as a percentage of the peak in TFLOP/s."""
    if gflops is None or not peak_tflops:
        return "-"
    percent = 100 * gflops / (peak_tflops * 1e3)
    return f"{percent:.0f}%" if percent >= 100 else f"{percent:.3g}%"


def table(elab_rows, torch_rows, peaks):
    elab = {r["rung"]: r for r in elab_rows}
    torch = {(r["rung"], r.get("mode", "eager")): r for r in torch_rows}
    rungs = list(dict.fromkeys([r["rung"] for r in elab_rows] + [r["rung"] for r in torch_rows]))
    peak = peak_tflops(peaks)
    lines = [
        "| rung | params | elab ms/step | eager ms/step | compiled ms/step "
        "| elab / eager speed | elab / compiled speed | elab GFLOP/s "
        "| share of fp32 peak: elab / eager / compiled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rung in rungs:
        e = elab.get(rung, {})
        eager, compiled = torch.get((rung, "eager"), {}), torch.get((rung, "compile"), {})
        em = e.get("ms_per_step")
        tm = [t.get("ms_per_step") for t in (eager, compiled)]
        gflops = e.get("gflops")
        # FLOPs per step are the model's, so torch's rate is elab's count over torch's time.
        rates = [gflops] + [None if gflops is None else ratio(gflops * em, m) for m in tm]
        shares = " / ".join(share(r, peak) for r in rates)
        params = e.get("params", eager.get("params", compiled.get("params")))
        cells = [
            rung,
            "-" if params is None else str(params),
            fmt(em, ".2f"),
            fmt(tm[0], ".2f"),
            fmt(tm[1], ".2f"),
            fmt(ratio(tm[0], em), ".2f"),
            fmt(ratio(tm[1], em), ".2f"),
            fmt(gflops, ".1f"),
            shares,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elab")
    ap.add_argument("torch")
    ap.add_argument("peak", nargs="?")
    args = ap.parse_args()
    peaks = rows(args.peak)
    print(peak_line(peaks) + "\n" + table(rows(args.elab), rows(args.torch), peaks), end="")


if __name__ == "__main__":
    main()
