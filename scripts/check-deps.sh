#!/usr/bin/env bash
# Two rules of the dependency graph, checked on normal (non-dev) dependencies, transitively:
# - the algorithm core and the crates below it are sans-IO: no async runtime, no RPC framework;
# - parsing a config pulls in no compute backend: dprox-config depends on neither dprox-compute
#   nor cudarc, whatever features are enabled.
set -euo pipefail
status=0
deps() { cargo tree --locked -p "$1" -e normal --prefix none "${@:2}"; }
for crate in dprox-rng dprox-compress dprox-core dprox-topology dprox-objective dprox-data dprox-config; do
  # cargo tree itself must work (a failure would make the check vacuous).
  tree=$(deps "$crate")
  if found=$(grep -E '^(tokio|tonic)[ -]' <<<"$tree" | sort -u) && [ -n "$found" ]; then
    echo "error: $crate depends on: $found" >&2
    status=1
  fi
done
tree=$(deps dprox-config --all-features)
if found=$(grep -E '^(dprox-compute|cudarc)[ -]' <<<"$tree" | sort -u) && [ -n "$found" ]; then
  echo "error: dprox-config (parsing a config) depends on: $found" >&2
  status=1
fi
[ $status -eq 0 ] && echo "ok: core crates are free of tokio and tonic; dprox-config is free of compute backends"
exit $status
