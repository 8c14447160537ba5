#!/usr/bin/env bash
# Balancing work by speed: deploy/examples/stragglers-16.toml (16-node torus, nodes 0-3 at a
# quarter speed) with balance = "none" and "throughput", in the simulator (simulated time to
# reach the objective that "none" ends at) and launched as 17 processes (wall time of the same
# number of iterations). The config sets `[cluster] shape = true`, so each launched node takes at
# least the simulator's compute time per gradient (its speed included) and the slow nodes are
# slow for real; launched, "throughput" sizes the batches by the rates the nodes measure at
# registration (which, shaped, are the modelled ones).
#   scripts/balance-compare.sh [OUT]      (default OUT: runs/balance)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/balance}
cfg=deploy/examples/stragglers-16.toml
dprox=target/release/dprox
cargo build --release --locked -q -p dprox-cli -p dprox-node -p dprox-coordinator
mkdir -p "$out"
variant() { # NAME BALANCE ITERATIONS
    sed -e "s/^balance = .*/balance = \"$2\"/" -e "s/^iterations = .*/iterations = $3/" \
        -e "s|\.\./\.\./data/|$PWD/data/|" "$cfg" > "$out/$1.toml"
}
variant none none 400
variant throughput throughput 800
"$dprox" sim "$out/none.toml" --out "$out/sim-none" -q
"$dprox" sim "$out/throughput.toml" --out "$out/sim-throughput" -q
variant launch-none none 100
variant launch-throughput throughput 100
"$dprox" launch "$out/launch-none.toml" --out "$out/launch-none" -q
"$dprox" launch "$out/launch-throughput.toml" --out "$out/launch-throughput" -q
python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
rows = lambda p: list(csv.DictReader(open(f"{out}/{p}/metrics.csv")))
none, bal = rows("sim-none"), rows("sim-throughput")
target = float(none[-1]["objective"])
hit = next(r for r in bal if float(r["objective"]) <= target)
tn, tb = float(none[-1]["sim_time_s"]), float(hit["sim_time_s"])
print(f"simulator: balance=none ends at objective {target:.6f} after {none[-1]['iter']} iterations, {tn:.3f} s simulated")
print(f"simulator: balance=throughput reaches it at iteration {hit['iter']}, {tb:.3f} s simulated: {tn / tb:.2f}x sooner")
ln, lb = rows("launch-none"), rows("launch-throughput")
wn, wb = float(ln[-1]["wall_time_s"]), float(lb[-1]["wall_time_s"])
print(f"launch ({ln[-1]['iter']} iterations, shaped): none {wn:.2f} s, throughput {wb:.2f} s wall: {wn / wb:.2f}x")
PY
