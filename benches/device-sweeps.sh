#!/usr/bin/env bash
# Sweeps on a lent GPU machine (16 cores, no Rust): the GPU_CONFIGS on wgpu, side by side,
# two workers each (two packs in flight), sharing the first four cores (what wgpu needs to feed
# the GPU), and the CPU_CONFIGS on the CPU backend over the other cores (split evenly,
# one single-threaded job per core: many small jobs use cores better side by side than
# sharing a pool), all under one deadline. A sweep still running at the deadline gets SIGTERM:
# its workers checkpoint and stop (exit 75), as after Ctrl-C.
#
# Then the sweep folders go into OUTDIR as one archive in pieces of at most 15 MiB
# (sweeps.tar.xz.00, .01, ...), with the checkpoints of unfinished jobs only, plus
# device-sweeps.log. Back on the CPU machine: `cat sweeps.tar.xz.* | tar -xJ -C sweeps`, then
# `elab sweep CONFIG` finishes what the deadline stopped (interrupted jobs resume from their
# checkpoints), and `elab export sweeps/<name>`.
#
#   benches/device-sweeps.sh OUTDIR SECONDS "GPU_CONFIGS" "CPU_CONFIGS"
#
# elab: $ELAB, else .gpu/elab.xz (`just gpu-binary`), else target/debug/elab.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
[ $# -eq 4 ] || {
    echo 'usage: benches/device-sweeps.sh OUTDIR SECONDS "GPU_CONFIGS" "CPU_CONFIGS"' >&2
    exit 2
}
mkdir -p "$1"
out="$(cd "$1" && pwd)" secs="$2"
read -r -a gpu_configs <<<"$3"
read -r -a cpu_configs <<<"$4"
exec > >(tee -a "$out/device-sweeps.log") 2>&1
tee_pid=$!
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"; exec >&- 2>&-; wait "$tee_pid"' EXIT
python="${PYTHON:-python3}"
say() { echo "[device-sweeps $(date -u +%H:%M:%S)] $*" >&2; }
note() { say "$*"; }
# shellcheck source=benches/device-common.sh
source benches/device-common.sh

vulkan_setup
elab="$(find_elab)"
sweeps="$scratch/sweeps"
mkdir -p "$sweeps"
cores="$(nproc)"
say "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $cores cores; $("$elab" --version)"
if command -v nvidia-smi >/dev/null; then
    say "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
fi

# `run_sweep CORES BACKEND SLOTS CONFIG [ENV...]`: one sweep, pinned to CORES, stopped at the
# deadline.
run_sweep() {
    local cores="$1" backend="$2" slots="$3" config="$4" start=$SECONDS rc=0
    shift 4
    env "$@" timeout -s TERM -k 60 "$secs" \
        taskset -c "$cores" "$elab" sweep "$config" --sweeps-dir "$sweeps" \
        --backend "$backend" --slots "$slots" >"$scratch/$(basename "$config").out" 2>&1 || rc=$?
    say "$config ($backend, cores $cores, $slots slots): exit $rc after $((SECONDS - start)) s"
    tail -n 3 "$scratch/$(basename "$config").out" >&2
}

pids=()
for config in "${gpu_configs[@]}"; do
    run_sweep "0-3" wgpu 2 "$config" &
    pids+=($!)
done
if [ "${#cpu_configs[@]}" -gt 0 ]; then
    # The cores left after the GPU sweeps' four, split evenly between the CPU sweeps.
    first=$(( ${#gpu_configs[@]} > 0 ? 4 : 0 ))
    per=$(( (cores - first) / ${#cpu_configs[@]} ))
    [ "$per" -ge 1 ] || { echo "too few cores ($cores) for ${#cpu_configs[@]} CPU sweeps" >&2; exit 2; }
    for i in "${!cpu_configs[@]}"; do
        lo=$((first + i * per))
        run_sweep "$lo-$((lo + per - 1))" cpu "$per" "${cpu_configs[$i]}" RAYON_NUM_THREADS=1 &
        pids+=($!)
    done
fi
for pid in "${pids[@]}"; do wait "$pid" || true; done

# Records back, in one archive: a finished job without its checkpoints, an unfinished one with
# its newest (all it needs to resume). What comes back from the machine is at most 64 MiB, so
# past 60 MiB the archive is made again without any checkpoint (unfinished jobs then restart).
excludes=()
for dir in "$sweeps"/*/; do
    name="$(basename "$dir")"
    finished=0 unfinished=0
    for job in "$dir"jobs/*/; do
        id="$(basename "$job")"
        if [ -f "$job/summary.json" ]; then
            finished=$((finished + 1))
            excludes+=("--exclude=$name/jobs/$id/ckpt-*")
        else
            unfinished=$((unfinished + 1))
            while IFS= read -r old; do
                excludes+=("--exclude=$name/jobs/$id/$(basename "$old")")
            done < <(find "$job" -maxdepth 1 -name 'ckpt-*' | sort | head -n -1)
        fi
    done
    say "$name: $finished jobs finished, $unfinished not"
done
pack() {
    rm -f "$out"/sweeps.tar.xz*
    tar -C "$sweeps" "$@" -cf - . | xz -6 -T0 | split -b 15M -d - "$out/sweeps.tar.xz."
    du -b -c "$out"/sweeps.tar.xz.* | tail -n 1 | cut -f1
}
size=$(pack "${excludes[@]}")
if [ "$size" -gt $((60 * 1024 * 1024)) ]; then
    say "$((size / 1048576)) MiB with checkpoints: packing the records alone"
    size=$(pack --exclude='ckpt-*')
fi
say "sweeps.tar.xz.*: $((size / 1024)) KiB"
