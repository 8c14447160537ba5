#!/usr/bin/env bash
# dprox against PyTorch on the LeNet workload (deploy/examples/mnist-lenet.toml: 5 nodes on a
# ring, MNIST 5k with node i holding digits {i, 9-i}, LeNet-5, batch 32, 300 iterations), for
# DProxSGT and CDProxSGT (top-k 30% on both exchanges). Runs alternate within each round (dprox
# sim, dprox launch, PyTorch gloo), so load on the machine shifts all of them alike, and the
# table gives the median over the rounds and PyTorch's time divided by each dprox time.
#
# Each system at its best thread setting on this machine: dprox with its defaults (the simulator
# runs the nodes on all cores with one GEMM thread each; launch gives each node process its share
# of the cores), PyTorch with one thread per process (torchrun's default; two per process on two
# cores measured slower). Times: dprox's `wall_time_s` from summary.json (the run, final
# evaluation included, process start-up not), PyTorch's loop (evaluation and start-up not
# included). Not part of the test command.
#
# The Python side (CPU is enough; PyPI's wheel also pulls CUDA libraries, about 5 GB installed):
#   python3 -m venv ~/torch-venv && ~/torch-venv/bin/pip install torch numpy
#   PYTHON=~/torch-venv/bin/python bench/compare.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
py=${PYTHON:-python3}
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
    echo "bench/compare.sh: $py cannot import torch and numpy; install them (see the top of this script) and set PYTHON" >&2
    exit 2
fi
cargo build --release -q -p dprox-cli -p dprox-node -p dprox-coordinator
dprox=target/release/dprox
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data="$(pwd)/data/"
sed -e "s#\"../../data/#\"$data#" -e 's/^eval_every = .*/eval_every = 300/' \
    deploy/examples/mnist-lenet.toml > "$work/dproxsgt.toml"
sed -e 's/^algorithm = "dproxsgt"/algorithm = "cdproxsgt"/' "$work/dproxsgt.toml" > "$work/cdproxsgt.toml"
printf '\n[compression]\nx = { kind = "top_k", ratio = 0.3 }\ny = { kind = "top_k", ratio = 0.3 }\n' \
    >> "$work/cdproxsgt.toml"

results="$work/results.jsonl"
summary() { # system algorithm out-dir
    "$py" -c 'import json,sys; s=json.load(open(sys.argv[3]+"/summary.json"))
assert s["status"] == "completed", s["error"]
print(json.dumps({"system":sys.argv[1],"algorithm":sys.argv[2],"loop_s":s["wall_time_s"],"accuracy":s["last"]["test_accuracy"]}))' "$@"
}
for r in $(seq 1 "$rounds"); do
    for alg in dproxsgt cdproxsgt; do
        rm -rf "$work/sim" "$work/launch"
        "$dprox" sim "$work/$alg.toml" --out "$work/sim" -q > /dev/null
        summary "dprox sim" "$alg" "$work/sim" >> "$results"
        "$dprox" launch "$work/$alg.toml" --out "$work/launch" -q > /dev/null
        summary "dprox launch" "$alg" "$work/launch" >> "$results"
        "$py" bench/pytorch_lenet.py --data data/mnist_5k.csv.gz --algorithm "$alg" --threads 1 \
            2> "$work/torch.err" | tail -n 1 >> "$results" || { cat "$work/torch.err" >&2; exit 1; }
        echo "round $r $alg done" >&2
    done
done
"$py" - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
threads = {"dprox sim": "all cores, 1 GEMM thread per node", "dprox launch": "cores / nodes per process",
           "pytorch-gloo": "1 per process"}
print(f"{'system':14} {'algorithm':10} {'threads':34} {'median s':>9} {'s/iteration':>12} {'accuracy':>9} {'PyTorch / this':>15}")
for alg in ("dproxsgt", "cdproxsgt"):
    med = {}
    for system in ("dprox sim", "dprox launch", "pytorch-gloo"):
        rs = [r for r in rows if r["system"] == system and r["algorithm"] == alg]
        med[system] = (statistics.median(r["loop_s"] for r in rs), rs[-1].get("accuracy"))
    for system, (s, acc) in med.items():
        ratio = med["pytorch-gloo"][0] / s
        acc = f"{acc:.4f}" if acc is not None else "-"
        print(f"{system:14} {alg:10} {threads[system]:34} {s:9.2f} {s / 300:12.4f} {acc:>9} {ratio:14.2f}x")
EOF
