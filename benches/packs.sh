#!/usr/bin/env bash
# Packed vs unpacked training, end to end: each sweep runs with `[sweep] pack = 1` (a worker
# per job) and with `pack = "auto"`, one after the other in this one run on this machine, into
# scratch sweep directories. Prints a markdown table; appends it to $1 if given.
# Usage: benches/packs.sh [docs/performance.md]   (run by `just bench-packs`)
set -euo pipefail
elab="${ELAB:-cargo run -q -p elab --}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
rows=""
for config in configs/arith.toml configs/grok-small.toml configs/wd-seeds.toml; do
    name="$(basename "$config" .toml)"
    declare -A took=()
    for pack in 1 '"auto"'; do
        variant="$scratch/$name-${pack//\"/}.toml"
        # The same sweep with only the pack setting changed (right under [sweep]).
        sed "s/^\[sweep\]$/[sweep]\npack = $pack/" "$config" > "$variant"
        start="$(date +%s.%N)"
        $elab sweep "$variant" --sweeps-dir "$scratch/sweeps-${pack//\"/}" >/dev/null 2>&1
        took[$pack]="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
    done
    jobs="$($elab plan "$config" | tail -1 | cut -d' ' -f1)"
    packs="$($elab plan "$config" | tail -1 | sed 's/.* in \([0-9]*\) packs.*/\1/')"
    rows+="$(printf '| %s | %s | %s | %.1f | %.1f | %.2f |' "$name" "$jobs" "$packs" \
        "${took[1]}" "${took['"auto"']}" \
        "$(awk -v a="${took[1]}" -v b="${took['"auto"']}" 'BEGIN { print a / b }')")"$'\n'
done
table="$(printf '### Packed training, %s, %s (%s cores)\n\n| sweep | jobs | packs (auto) | pack = 1 (s) | pack = auto (s) | speed-up |\n|---|---|---|---|---|---|\n%s' \
    "$(date +%Y-%m-%d)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" "$rows")"
echo "$table"
if [ $# -ge 1 ]; then
    printf '\n%s\n' "$table" >> "$1"
fi
