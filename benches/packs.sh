#!/usr/bin/env bash
# Packed vs unpacked training, end to end: each sweep runs with `[sweep] pack = 1` (a worker
# per job) and with `pack = "auto"`, one after the other in this one run on this machine, into
# scratch sweep directories. Prints a markdown table; appends it to $1 if given.
# Usage: benches/packs.sh [docs/performance.md]   (run by `just bench-packs`)
#
# The environment can change what runs (benches/gpu-check.sh sets these for a GPU):
#   ELAB            the elab command [default: cargo run -q -p elab --]
#   PACKS_CONFIGS   the sweep files [default: arith, grok-small, wd-seeds]
#   PACKS_BACKEND   [sweep] backend of every run (e.g. wgpu) [default: each file's own]
#   PACKS_STEPS     [train] steps of every job [default: each file's own]
#   PACKS_TIMEOUT   stop each sweep after this many seconds: its cell then reads "> N s" with
#                   the jobs done by then, and the speed-up is a bound [default: no limit]
#   PACKS_TIMEOUT_UNPACKED  the same for the pack = 1 runs only [default: PACKS_TIMEOUT]
#   PACKS_MACHINE   the machine named in the heading [default: the CPU model and cores]
#   PACKS_LOG       a file to append the sweeps' output to [default: none kept]
set -euo pipefail
elab="${ELAB:-cargo run -q -p elab --}"
configs="${PACKS_CONFIGS:-configs/arith.toml configs/grok-small.toml configs/wd-seeds.toml}"
log="${PACKS_LOG:-/dev/null}"
machine="${PACKS_MACHINE:-$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) cores)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# The sweep file $1 with only the execution settings (and PACKS_STEPS) changed, on stdout:
# pack = $2 and PACKS_BACKEND right under [sweep] (replacing the file's own backend line).
variant() {
    local insert="pack = $2" edits=()
    if [ -n "${PACKS_BACKEND:-}" ]; then
        insert+="\\nbackend = \"$PACKS_BACKEND\""
        edits+=(-e '/^backend = /d')
    fi
    if [ -n "${PACKS_STEPS:-}" ]; then
        edits+=(-e "s/^steps = .*/steps = $PACKS_STEPS/")
    fi
    sed "${edits[@]}" -e "s/^\[sweep\]$/[sweep]\n$insert/" "$1"
}

# The time limit of the pack = $1 runs, if any.
limit_of() {
    if [ "$1" = 1 ]; then echo "${PACKS_TIMEOUT_UNPACKED:-${PACKS_TIMEOUT:-}}"; else echo "${PACKS_TIMEOUT:-}"; fi
}

# Runs variant $1 into sweeps dir $2 for at most $3 seconds (none if empty); prints its
# seconds, or "> N s (D/J jobs done)" if the limit stopped it.
run_sweep() {
    local variant="$1" sweeps="$2" secs="$3" start took rc=0
    local limit=(); [ -n "$secs" ] && limit=(timeout -k 15 "$secs")
    start="$(date +%s.%N)"
    # shellcheck disable=SC2086 # $elab may be a command with arguments (cargo run ...)
    "${limit[@]}" $elab sweep "$variant" --sweeps-dir "$sweeps" >>"$log" 2>&1 || rc=$?
    took="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
    if [ "$rc" = 124 ]; then
        # `elab status` begins "<dir>: J jobs: D done, ..." (no "done" when none is).
        local line; line="$($elab status "$sweeps"/* 2>/dev/null | head -1 || true)"
        local total; total="$(sed -n 's/.*: \([0-9]*\) jobs:.*/\1/p' <<<"$line")"
        local finished; finished="$(sed -n 's/.* \([0-9]*\) done.*/\1/p' <<<"$line")"
        # The whole sweep at the rate it went, if any job finished.
        local rate=""
        if [ -n "$total" ] && [ "${finished:-0}" -gt 0 ]; then
            rate="; ~$(awk -v t="$secs" -v d="$finished" -v n="$total" 'BEGIN { printf "%.0f", t * n / d }') s at that rate"
        fi
        echo "> $secs s (${finished:-0}/${total:-?} jobs done$rate)"
    elif [ "$rc" != 0 ]; then
        echo "$variant: elab sweep failed (exit $rc)" >&2
        return "$rc"
    else
        echo "$took"
    fi
}

is_number() { [[ "$1" =~ ^[0-9.]+$ ]]; }

rows=""
for config in $configs; do
    name="$(basename "$config" .toml)"
    declare -A took=()
    for pack in 1 auto; do
        file="$scratch/$name-$pack.toml"
        if [ "$pack" = auto ]; then variant "$config" '"auto"' > "$file"; else variant "$config" 1 > "$file"; fi
        took[$pack]="$(run_sweep "$file" "$scratch/sweeps-$name-$pack" "$(limit_of "$pack")")"
    done
    plan="$($elab plan "$scratch/$name-auto.toml" | tail -1)"
    jobs="$(cut -d' ' -f1 <<<"$plan")"
    packs="$(sed 's/.* in \([0-9]*\) packs.*/\1/' <<<"$plan")"
    one="${took[1]}" auto="${took[auto]}"
    cell() { if is_number "$1"; then printf '%.1f' "$1"; else printf '%s' "$1"; fi; }
    # A stopped run took at least its limit: the speed-up is then a bound.
    speedup="-"
    if is_number "$one" && is_number "$auto"; then
        speedup="$(awk -v a="$one" -v b="$auto" 'BEGIN { printf "%.2f", a / b }')"
    elif is_number "$auto"; then
        speedup="$(awk -v a="$(limit_of 1)" -v b="$auto" 'BEGIN { printf "> %.2f", a / b }')"
    elif is_number "$one"; then
        speedup="$(awk -v a="$one" -v b="$(limit_of auto)" 'BEGIN { printf "< %.2f", a / b }')"
    fi
    rows+="| $name | $jobs | $packs | $(cell "$one") | $(cell "$auto") | $speedup |"$'\n'
done
notes=""
[ -n "${PACKS_BACKEND:-}" ] && notes+="Backend: $PACKS_BACKEND."
[ -n "${PACKS_STEPS:-}" ] && notes+="${notes:+ }Every job trained $PACKS_STEPS steps (not its file's)."
table="$(printf '### Packed training, %s, %s\n\n| sweep | jobs | packs (auto) | pack = 1 (s) | pack = auto (s) | speed-up |\n|---|---|---|---|---|---|\n%s%s' \
    "$(date +%Y-%m-%d)" "$machine" "$rows" "${notes:+$'\n'$notes}")"
echo "$table"
if [ $# -ge 1 ]; then
    printf '\n%s\n' "$table" >> "$1"
fi
