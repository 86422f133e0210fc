# emergence-lab recipes. Every recipe but the benchmarks' and gpu-binary is one cargo command, so
# a machine without `just` can run the same thing (see README.md).

# Builds go where plain `cargo` puts them (./target, or $CARGO_TARGET_DIR when set, as CI sets
# it), so that `just` and the README's cargo commands share one build.
python := env_var_or_default("PYTHON", "python3")

# Run (or resume) a sweep: `just sweep configs/arith.toml`
sweep config="configs/arith.toml" *args="":
    cargo run -q -p elab -- sweep {{config}} {{args}}

# Export a finished sweep as a shipped result (results/<name>, docs/reproductions.md): the
# export, with curves.csv gzipped for the repository (pandas and polars read it as it is)
ship name:
    cargo run -q -p elab -- export sweeps/{{name}}
    gzip -9nf results/{{name}}/curves.csv

# Recompute docs/reproductions.md's numbers from results/ (CI fails when they disagree)
claims:
    cargo run -q -p elab -- claims

# Show what a sweep file expands to
plan config="configs/arith.toml":
    cargo run -q -p elab -- plan {{config}}

# Jobs by state with their latest metrics: `just status sweeps/arith`
status dir="sweeps/arith":
    cargo run -q -p elab -- status {{dir}}

# Tidy CSV, plots and report.html under results/<name>: `just export sweeps/arith`
export dir="sweeps/arith" *args="":
    cargo run -q -p elab -- export {{dir}} {{args}}

# Train one job: `just train configs/jobs/modadd.toml`
train job="configs/jobs/modadd.toml" *args="":
    cargo run -q -p elab -- train {{job}} {{args}}

# The test suite (what CI runs)
test:
    cargo test --workspace

# Training speed per size and backend, written to docs/performance.md
bench *args="":
    cargo run -q -p elab -- bench --backend all --append-to docs/performance.md {{args}}

# Packed vs unpacked training, end to end (arith, grok-small, a 64-job grid), in one run:
# appends the table to docs/performance.md.
bench-packs:
    cargo build -q -p elab
    ELAB="${CARGO_TARGET_DIR:-target}/debug/elab" benches/packs.sh docs/performance.md

# elab vs the PyTorch twin (benches/torch_twin.py) on the same machine, rung by rung and back to
# back, each rung in a fresh process (so that its peak RSS is its own); the table is appended to
# docs/performance.md. Needs PyTorch (PYTHON=/path/to/python with torch installed). On a machine
# whose speed drifts (shared cloud cores), `repeats=3` alternates the two sides three times per
# rung and keeps each side's fastest run. `isa=avx2` holds both sides to AVX2 on an AVX-512
# machine (PyTorch through ATEN_CPU_CAPABILITY and MKL_ENABLE_INSTRUCTIONS, elab's matmuls by a
# build without its `avx512` feature: the first such build recompiles burn, about 10 minutes).
bench-compare steps="10" rungs="10k 100k 1M 3M 10M nanda" repeats="1" isa="native":
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{isa}}" in
        native) features=() ;;
        avx2) features=(--no-default-features)
              export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
        *) echo "bench-compare: isa must be native or avx2, not {{isa}}" >&2; exit 2 ;;
    esac
    out="${CARGO_TARGET_DIR:-target}/bench-compare"
    mkdir -p "$out"
    : > "$out/elab.jsonl"; : > "$out/torch.jsonl"
    cargo build -q -p elab "${features[@]}"
    for rung in {{rungs}}; do
        for _ in $(seq {{repeats}}); do
            cargo run -q -p elab "${features[@]}" -- bench --backend cpu --rungs "$rung" --steps {{steps}} --json >> "$out/elab.jsonl"
            {{python}} benches/torch_twin.py --rungs "$rung" --steps {{steps}} --modes eager,answer >> "$out/torch.jsonl"
            # Inductor's code under ATEN_CPU_CAPABILITY=avx2 diverged on an AVX-512 Xeon
            # (docs/performance.md, "The AVX-512 path"): torch.compile is held in MKL only.
            env -u ATEN_CPU_CAPABILITY {{python}} benches/torch_twin.py --rungs "$rung" --steps {{steps}} --modes compile >> "$out/torch.jsonl"
        done
    done
    {{python}} benches/compare.py "$out/elab.jsonl" "$out/torch.jsonl" --append-to docs/performance.md

# elab for a GPU machine without Rust (benches/gpu-check.sh): the same build, stripped and
# xz-compressed into .gpu/elab.xz (about 13 MB of the 64 MiB a device run may carry), with the
# commit it was built from in .gpu/elab.rev. docs/performance.md, "GPU check", has the command.
gpu-binary:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q -p elab
    mkdir -p .gpu
    strip -o .gpu/elab "${CARGO_TARGET_DIR:-target}/debug/elab"
    xz -9 -T2 -f .gpu/elab
    changed="$(git status --porcelain --untracked-files=no | grep -q . && echo ' with uncommitted changes' || true)"
    echo "commit $(git rev-parse --short HEAD)$changed, built $(date -u '+%Y-%m-%d %H:%M UTC')" > .gpu/elab.rev
    echo ".gpu/elab.xz: $(du -h .gpu/elab.xz | cut -f1) ($(cat .gpu/elab.rev))"

# Formatting and lints
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
