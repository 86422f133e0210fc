"""Put `elab bench --json` beside the PyTorch twin (benches/torch_twin.py) as a markdown table.

    python3 benches/compare.py ELAB.jsonl TORCH.jsonl [--append-to docs/performance.md]

Both inputs are JSON lines, one object per rung (rung, params, ms_per_step, tokens_per_s,
peak_rss_mib, device, ...; the twin's also a `mode`). A rung (and mode) measured more than once
counts its fastest run, on each side: on a machine whose speed drifts from minute to minute
(shared cloud cores), the best of runs alternated between the two sides is the fairest
estimate of what each can do, as `timeit` reports the best of its repeats; with repeats, a
second table gives each repeat's own ratio (median, lowest, highest). Prints a section
headed by the date, CPU, its instruction set (and what each twin mode was held to, from its rows)
and torch version,
then one row per rung with a speed column per twin mode: torch ms / elab ms (above 1: elab is
faster); "RSS ratio" is elab / torch peak RSS. A rung in only one file gets "-" in the other's columns. --append-to
also appends the section to that file (atomically). `just bench-compare` runs all of this.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict


def load(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows


# The twin's modes (benches/torch_twin.py --modes), as the table names them.
MODES = {
    "eager": "eager",
    "answer": "eager, loss positions only",
    "compile": "torch.compile",
}


def instruction_set(torch_rows):
    """The widest vector extension this CPU has, and what the twin was held to: the environment
    variables each of its rows ran under (benches/torch_twin.py `held`), per mode where the
    modes differ (`just bench-compare ... avx2` runs torch.compile without ATEN_CPU_CAPABILITY)."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    by_mode = {}
    for r in torch_rows:
        holds = by_mode.setdefault(r.get("mode", "eager"), [])
        setting = " ".join(r.get("held", [])) or "not held"
        if setting not in holds:
            holds.append(setting)
    settings = {}
    for mode in [m for m in MODES if m in by_mode] + [m for m in by_mode if m not in MODES]:
        settings.setdefault(" or ".join(by_mode[mode]), []).append(mode)
    if list(settings) in ([], ["not held"]):
        return isa
    if len(settings) == 1:
        return f"{isa}; PyTorch run with {next(iter(settings))}"
    parts = [f"{s} ({', '.join(modes)})" for s, modes in settings.items()]
    return f"{isa}; PyTorch run with {'; '.join(parts)}"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def ratio(num, den):
    return None if num is None or den in (None, 0) else num / den


def fastest(rows, key):
    """One row per key: the one with the lowest ms_per_step; and how many runs each key had."""
    def ms(r):
        value = r.get("ms_per_step")
        return float("inf") if value is None else value

    best, runs = {}, {}
    for r in rows:
        k = key(r)
        runs[k] = runs.get(k, 0) + 1
        if k not in best or ms(r) < ms(best[k]):
            best[k] = r
    return best, runs


def paired(elab_rows, torch_rows):
    """Per (rung, mode): the speed ratio of each repeat, the k-th elab run of the rung against
    the k-th twin run of it in that mode (back to back in `just bench-compare`), as many as
    both sides have."""
    elab_ms, torch_ms = defaultdict(list), defaultdict(list)
    for r in elab_rows:
        elab_ms[r["rung"]].append(r.get("ms_per_step"))
    for r in torch_rows:
        torch_ms[(r["rung"], r.get("mode", "eager"))].append(r.get("ms_per_step"))
    return {
        (rung, mode): [v for e, t in zip(elab_ms[rung], ms) if (v := ratio(t, e)) is not None]
        for (rung, mode), ms in torch_ms.items()
    }


def spread(values):
    """`median (lowest-highest)` of a list of ratios."""
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def section(elab_rows, torch_rows):
    elab, elab_runs = fastest(elab_rows, lambda r: r["rung"])
    torch, torch_runs = fastest(torch_rows, lambda r: (r["rung"], r.get("mode", "eager")))
    repeats = max([*elab_runs.values(), *torch_runs.values(), 1])
    modes = [m for m in MODES if any(k[1] == m for k in torch)]
    torch_device = next((r.get("device", "") for r in torch_rows), "")
    version = next((p.split()[1] for p in torch_device.split(", ") if p.startswith("torch ")), "-")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### elab vs PyTorch: {date}, {cpu_model()} ({instruction_set(torch_rows)}), "
        f"{os.cpu_count()} cores, torch {version}"
        + (f", best of {repeats} alternated runs" if repeats > 1 else ""),
        "",
        f"elab: {next((r.get('device', '') for r in elab_rows), '-')}; "
        f"PyTorch: {torch_device or '-'}",
        "",
        "| rung | params | elab ms/step | "
        + "".join(f"torch ms/step ({MODES[m]}) | " for m in modes)
        + "".join(f"elab / torch speed ({MODES[m]}) | " for m in modes)
        + "elab share of its matmul peak | elab peak RSS MiB | torch peak RSS MiB | RSS ratio |",
        "|---|---|---|" + "---|" * (2 * len(modes)) + "---|---|---|---|",
    ]
    rungs = list(elab) + [r for r, _ in torch if r not in elab]
    rungs = list(dict.fromkeys(rungs))
    for rung in rungs:
        e = elab.get(rung, {})
        ts = [torch.get((rung, m), {}) for m in modes]
        first = next((t for t in ts if t), {})
        em = e.get("ms_per_step")
        er, tr = e.get("peak_rss_mib"), first.get("peak_rss_mib")
        share = e.get("peak_share")
        params = e.get("params", first.get("params"))
        if e and first and e.get("params") != first.get("params"):
            params = f"{e['params']} / {first['params']} (differ!)"
        cells = [rung, str(params), fmt(em, ".1f")]
        cells += [fmt(t.get("ms_per_step"), ".1f") for t in ts]
        cells += [fmt(ratio(t.get("ms_per_step"), em), ".2f") for t in ts]
        cells += [
            "-" if share is None else f"{100 * share:.0f}%",
            fmt(er, ".0f"),
            fmt(tr, ".0f"),
            fmt(ratio(er, tr), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Speed is torch ms / elab ms (above 1: elab is faster). Eager runs every position "
        "through the model; the other two compute the last block and the head at the loss's "
        "positions only, the work elab does (benches/torch_twin.py). "
        "Peak RSS is the whole process (VmHWM), torch's from its first mode: it includes what "
        "importing torch costs. "
        "The share of matmul peak is elab's model GFLOP/s over its own float32 matmul rate on "
        "the same machine (`elab bench`: the best of 5 products of 2048 x 2048 matrices)."
    )
    lines += ["", note]
    if repeats > 1:
        # The fastest runs of the two sides may come from different minutes; each repeat's
        # ratio compares runs seconds apart, so its median shrugs off a side's lucky minute.
        ratios = paired(elab_rows, torch_rows)
        lines += [
            "",
            "Each repeat on its own (torch ms / elab ms of the runs made back to back): median "
            "(lowest-highest).",
            "",
            "| " + " | ".join(["rung"] + [f"speed per repeat ({MODES[m]})" for m in modes]) + " |",
            "|---|" + "---|" * len(modes),
        ]
        for rung in rungs:
            cells = [rung] + [spread(ratios.get((rung, m), [])) for m in modes]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def append_atomically(path, text):
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    sep = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".compare-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(old + sep + text)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elab", help="JSON lines from `elab bench --json`")
    ap.add_argument("torch", help="JSON lines from benches/torch_twin.py")
    ap.add_argument("--append-to", help="also append the section to this markdown file")
    args = ap.parse_args()
    text = section(load(args.elab), load(args.torch))
    sys.stdout.write(text)
    if args.append_to:
        append_atomically(args.append_to, text)
        print(f"appended to {args.append_to}", file=sys.stderr)


if __name__ == "__main__":
    main()
