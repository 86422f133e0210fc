#!/usr/bin/env bash
# The lab's one GPU check (issue 23), for a machine with a GPU, Python with PyTorch (CUDA) and
# no Rust: the wgpu adapter elab finds, `elab bench --backend wgpu` on every rung beside the
# PyTorch twin (eager and torch.compile) rung by rung, and packed vs unpacked sweeps end to
# end on wgpu (the arith flagship as configured, and the 64-job wd-seeds grid). Writes
# OUTDIR/gpu-check.md (tables, rewritten after every phase, so a stopped run keeps what it
# measured) and OUTDIR/gpu-check.log, plus the raw JSON lines.
#
#   benches/gpu-check.sh [--dry-run] OUTDIR
#
# elab: $ELAB, else .gpu/elab.xz (`just gpu-binary`), else target/debug/elab. Without a Vulkan
# loader it unpacks the Debian packages in .gl/ (docs/performance.md, "GPU check"). Every phase
# has a time limit, and the whole check ends within GPU_CHECK_BUDGET seconds (default 360).
# A software adapter (llvmpipe) fails the check (exit 2), except with --dry-run: the same
# phases with one rung, 2 steps and the smoke sweep, for a CPU machine (CI runs it on lavapipe:
# crates/cli/tests/gpu_check.rs), training on the CPU unless GPU_CHECK_BACKEND=wgpu; PyTorch is
# then optional and runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
[ $# -eq 1 ] || { echo "usage: benches/gpu-check.sh [--dry-run] OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out="$(cd "$1" && pwd)"
md="$out/gpu-check.md"
exec > >(tee -a "$out/gpu-check.log") 2>&1
tee_pid=$!
scratch="$(mktemp -d)"
# At exit: the scratch goes, and the log is complete before the caller collects OUTDIR.
trap 'rm -rf "$scratch"; exec >&- 2>&-; wait "$tee_pid"' EXIT
python="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1  # benches/__pycache__ is tracked: leave it as it is
budget="${GPU_CHECK_BUDGET:-360}"
deadline=$((SECONDS + budget))

if [ "$dry" = 1 ]; then
    # On lavapipe every process autotunes each kernel shape through LLVM: minutes for one rung
    # on 2 cores. So a dry run trains on the CPU unless GPU_CHECK_BACKEND=wgpu says otherwise.
    backend="${GPU_CHECK_BACKEND:-cpu}" steps=2 twin_device=cpu compile=0 peak_n=256
    rungs="10k" sweeps="configs/smoke.toml" pack_steps=2
else
    backend=wgpu steps=30 twin_device=cuda compile=1 peak_n=8192
    rungs="10k 100k 1M 3M 10M nanda" sweeps="configs/arith.toml configs/wd-seeds.toml" pack_steps=""
fi
# A second run can take what the first did not reach, e.g. GPU_CHECK_RUNGS="" (no ladder) or
# GPU_CHECK_SWEEPS=configs/arith.toml (the flagship only); GPU_CHECK_COMPILE=0 skips the
# compiled twin.
rungs="${GPU_CHECK_RUNGS-$rungs}" sweeps="${GPU_CHECK_SWEEPS-$sweeps}"
compile="${GPU_CHECK_COMPILE:-$compile}"
read -r -a pack_configs <<<"$sweeps"

# Progress goes to stderr (the log), never into a caller's captured output.
say() { echo "[gpu-check $(date -u +%H:%M:%S)] $*" >&2; }
notes=()
note() { say "$*"; notes+=("$*"); }

# Seconds a phase may take: at most $1, and never past the deadline (less a reserve for the
# tables).
cap() {
    local left=$((deadline - SECONDS - 10))
    echo $(($1 < left ? $1 : left))
}

# `bounded WHAT SECONDS CMD...`: runs CMD for at most SECONDS (its whole process group), notes
# a stop or a failure, and returns CMD's status.
bounded() {
    local what="$1" secs="$2" start=$SECONDS rc=0
    shift 2
    if [ "$secs" -lt 5 ]; then
        note "$what: not run (out of time)"
        return 1
    fi
    timeout -k 10 "$secs" "$@" || rc=$?
    case "$rc" in
        0) say "$what: $((SECONDS - start)) s" ;;
        124 | 137) note "$what: stopped at its limit of $secs s" ;;
        *) note "$what: failed (exit $rc), see gpu-check.log" ;;
    esac
    return "$rc"
}

# The Vulkan loader and the carried elab: vulkan_setup, find_elab.
# shellcheck source=benches/device-common.sh
source benches/device-common.sh

# --- The markdown, rewritten after every phase -------------------------------------------------
header="" probe="" packs_heading="" packs_note="" packs_rows="" flagship=""
write_md() {
    {
        echo "$header"
        echo
        echo "$probe"
        echo
        echo "## elab ($backend) vs the PyTorch twin, rung by rung"
        echo
        if [ -s "$out/ladder-elab.jsonl" ] || [ -s "$out/ladder-torch.jsonl" ]; then
            "$python" benches/gpu_ladder.py "$out/ladder-elab.jsonl" "$out/ladder-torch.jsonl" "$out/peak.jsonl"
            echo
            echo "Each rung: \`elab bench --backend $backend --steps $steps\`, then \`benches/torch_twin.py --device $twin_device\` (eager) back to back; then the twin with \`--modes compile\` (the last block and the head at the loss's positions only, as elab) over the rungs in one process ($steps timed steps after 3 warmup steps, no read-back until the last; compilation falls in the warmup). Speed: torch ms / elab ms (above 1: elab is faster)."
        else
            echo "Not measured."
        fi
        echo
        echo "## Packed vs unpacked, end to end on $backend"
        echo
        if [ -n "$packs_rows" ]; then
            echo "$packs_heading"
            echo
            echo "| sweep | jobs | packs (auto) | pack = 1 (s) | pack = auto (s) | speed-up |"
            echo "|---|---|---|---|---|---|"
            printf '%s' "$packs_rows"
            echo
            [ -z "$packs_note" ] || echo "$packs_note"
            [ -z "$flagship" ] || echo "$flagship"
        else
            echo "Not measured."
        fi
        echo
        echo "## Notes"
        echo
        for n in "${notes[@]}"; do echo "- $n"; done
        echo "- Took $SECONDS s of a ${budget} s budget."
    } >"$md.tmp"
    mv "$md.tmp" "$md"
}

# --- 1. The machine, and the adapter wgpu picks --------------------------------------------------
vulkan_setup
elab="$(find_elab)"
export ELAB="$elab"
gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
torch="$("$python" -c 'import torch; print(torch.__version__, "with CUDA" if torch.cuda.is_available() else "without CUDA")' 2>/dev/null || true)"
built="$(cat .gpu/elab.rev 2>/dev/null || echo "$elab")"
title="GPU check: ${gpu:-no NVIDIA GPU}"
[ "$dry" = 1 ] && title="GPU check, dry run"
header="# $title, $(date -u '+%Y-%m-%d %H:%M UTC')

Machine: ${gpu:-no nvidia-smi}; $cpu, $(nproc) cores. elab: $built. PyTorch: ${torch:-not installed (the twin and the peak are skipped)}."
[ "$dry" = 1 ] && header+="

A dry run (\`--dry-run\`): one rung, 2 steps and the smoke sweep, trained on the $backend backend; the numbers say nothing about a GPU."
say "elab: $elab ($built); GPU: ${gpu:-none}; torch: ${torch:-none}"
nvidia-smi >&2 2>/dev/null || true
icds=(/usr/share/vulkan/icd.d/* /etc/vulkan/icd.d/*)
say "Vulkan: $(ldconfig -p | grep -c 'libvulkan\.so' || true) loader(s); ICD files: ${icds[*]} ${VK_DRIVER_FILES:-}"

# `elab device` opens the adapter wgpu picks (compiling nothing) and says whether elab's `auto`
# takes it for a GPU: never a software rasterizer.
bounded "probe" "$(cap 60)" "$elab" device --backend auto >"$scratch/probe.json" || true
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$scratch/probe.json"; }
picked="$(field backend)" adapter="$(field name)" why="$(field reason)"
if [ "$picked" = wgpu ]; then
    probe="wgpu adapter: **$adapter** ($why)."
else
    probe="wgpu adapter: **none usable as a GPU**: ${why:-elab device failed, see gpu-check.log}."
    if [ "$dry" = 0 ]; then
        probe+=" The check stops here: see gpu-check.log (Vulkan loader, ICD files, VK_DRIVER_FILES)."
        note "FAILED: no GPU adapter for wgpu (${why:-elab device failed})"
        write_md
        exit 2
    fi
    note "dry run: no GPU, so elab trains on the $backend backend"
fi
say "$probe"
write_md

# --- 2. The device's matmul peak (the yardstick for the ladder's shares) -------------------------
have_torch=0
if [ -z "$rungs" ]; then
    : # no ladder, so no twin and no peak
elif [ -z "$torch" ]; then
    note "PyTorch is not installed: the twin and the peak are skipped"
elif [ "$twin_device" = cuda ] && [[ "$torch" != *"with CUDA" ]]; then
    note "PyTorch sees no CUDA device: the twin and the peak are skipped"
else
    have_torch=1
    bounded "matmul peak" "$(cap 60)" "$python" benches/matmul_peak.py --device "$twin_device" --n "$peak_n" >"$out/peak.jsonl" || true
fi

# --- 3. The ladder: elab, then the twin, rung by rung --------------------------------------------
# The ladder may use a little under half of the budget when sweeps follow. Eager runs back to
# back with elab on every rung first; torch.compile (about 20 s of compiling a rung) follows in
# one process over the rungs, as far as the ladder's time goes.
ladder_share=$(( ${#pack_configs[@]} > 0 ? 45 : 100 ))
ladder_end=$((SECONDS + (deadline - SECONDS) * ladder_share / 100))
ladder_cap() {
    local left=$((ladder_end - SECONDS))
    cap $(($1 < left ? $1 : left))
}
: >"$out/ladder-elab.jsonl"
: >"$out/ladder-torch.jsonl"
for rung in $rungs; do
    bounded "elab $rung" "$(ladder_cap 60)" "$elab" bench --backend "$backend" --rungs "$rung" \
        --steps "$steps" --json >>"$out/ladder-elab.jsonl" || true
    if [ "$have_torch" = 1 ]; then
        bounded "torch eager $rung" "$(ladder_cap 45)" "$python" benches/torch_twin.py \
            --device "$twin_device" --rungs "$rung" --steps "$steps" >>"$out/ladder-torch.jsonl" || true
    fi
    write_md
done
if [ "$have_torch" = 1 ] && [ "$compile" = 1 ] && [ -n "$rungs" ]; then
    bounded "torch compile (all rungs)" "$(ladder_cap 300)" "$python" benches/torch_twin.py \
        --device "$twin_device" --modes compile --rungs "${rungs// /,}" --steps "$steps" \
        >>"$out/ladder-torch.jsonl" || true
    write_md
fi

# --- 4. Packed vs unpacked sweeps, end to end (benches/packs.sh, one sweep file at a time) ------
export PACKS_BACKEND="$backend" PACKS_STEPS="$pack_steps" PACKS_LOG="$out/gpu-check.log"
export PACKS_MACHINE="${gpu%%,*}"
[ "$dry" = 1 ] && PACKS_MACHINE="dry run, $cpu"
for i in "${!pack_configs[@]}"; do
    config="${pack_configs[$i]}"
    name="$(basename "$config" .toml)"
    # The first file gets 55% of what is left, the last all of it; of a file's time, pack = 1
    # gets a third (stopped, it still gives the jobs done, hence a rate) and "auto" (the
    # flagship, for arith) two thirds.
    share=$(( i + 1 == ${#pack_configs[@]} ? 100 : 55 ))
    secs=$(( (deadline - SECONDS - 20) * share / 100 ))
    export PACKS_TIMEOUT_UNPACKED=$(( secs / 3 < 120 ? secs / 3 : 120 ))
    export PACKS_TIMEOUT=$(( secs * 2 / 3 < 240 ? secs * 2 / 3 : 240 ))
    if [ "$PACKS_TIMEOUT_UNPACKED" -lt 5 ]; then
        note "$name: packing not run (out of time)"
        continue
    fi
    PACKS_CONFIGS="$config" bounded "packs $name" "$(cap $((secs + 60)))" \
        bash benches/packs.sh >"$scratch/packs-$name.md" || true
    row="$(grep "^| $name |" "$scratch/packs-$name.md" || true)"
    [ -n "$row" ] || continue
    packs_rows+="$row"$'\n'
    # The heading, and packs.sh's line on what it changed (backend, steps).
    packs_heading="$(grep -m1 '^### ' "$scratch/packs-$name.md")"
    packs_note="$(grep -v -e '^###' -e '^|' -e '^$' "$scratch/packs-$name.md" || true)"
    if [ "$name" = arith ]; then
        # The pack = "auto" run is the flagship as configured (auto is the default).
        took="$(cut -d'|' -f6 <<<"$row" | xargs)"
        [[ "$took" =~ ^[0-9.]+$ ]] && took+=" s"
        flagship="The flagship, \`configs/arith.toml\` as configured (pack = \"auto\", $(cut -d'|' -f3 <<<"$row" | xargs) jobs), end to end on $backend: **$took** (its pack = auto run above)."
    fi
    write_md
done
write_md
say "done in $SECONDS s: $md"
