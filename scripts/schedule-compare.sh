#!/usr/bin/env bash
# One-peer exponential against the static exponential graph on 64 simulated nodes
# (deploy/examples/one-peer-64.toml): bytes and simulated time to reach a target objective (the
# worse of the two final objectives, so both reach it), and a figure of both runs.
#   scripts/schedule-compare.sh [OUT]      (default OUT: runs/schedules)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/schedules}
cfg=deploy/examples/one-peer-64.toml
dprox=target/release/dprox
cargo build --release --locked -q -p dprox-cli
mkdir -p "$out"
sed -e "s|\.\./\.\./data/|$PWD/data/|" "$cfg" > "$out/one-peer.toml"
sed -e 's/^schedule = .*/schedule = "static"/' "$out/one-peer.toml" > "$out/static.toml"
"$dprox" sim "$out/one-peer.toml" --out "$out/one-peer" -q
"$dprox" sim "$out/static.toml" --out "$out/static" -q
"$dprox" plot "$out/static" "$out/one-peer" --out "$out/schedules.png" --title "64 nodes: static exponential vs one-peer exponential" -q
python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
runs = {name: list(csv.DictReader(open(f"{out}/{name}/metrics.csv"))) for name in ("static", "one-peer")}
target = max(float(r[-1]["objective"]) for r in runs.values())
print(f"target objective {target:.6f} (the worse final objective)")
print("| schedule | iterations to target | MB sent to target | simulated s to target | final objective | final test accuracy |")
print("|---|---:|---:|---:|---:|---:|")
for name, rows in runs.items():
    hit = next(r for r in rows if float(r["objective"]) <= target)
    last = rows[-1]
    print(f"| {name} | {hit['iter']} | {int(hit['bytes_sent']) / 1e6:.1f} | {float(hit['sim_time_s']):.3f} "
          f"| {float(last['objective']):.6f} | {float(last['test_accuracy']):.4f} |")
PY
echo "figure: $out/schedules.png"
