#!/usr/bin/env bash
# The algorithm core and the crates below it are sans-IO: no async runtime, no RPC framework.
# Fails when any of them depends (directly or transitively, normal dependencies) on tokio or tonic.
set -euo pipefail
status=0
for crate in dprox-rng dprox-compress dprox-core dprox-topology dprox-objective dprox-data; do
  if found=$(cargo tree --locked -p "$crate" -e normal --prefix none 2>/dev/null | grep -E '^(tokio|tonic)[ -]' | sort -u) && [ -n "$found" ]; then
    echo "error: $crate depends on: $found" >&2
    status=1
  fi
  # cargo tree itself must work (a failure would make the check vacuous).
  cargo tree --locked -p "$crate" -e normal --prefix none >/dev/null
done
[ $status -eq 0 ] && echo "ok: core crates are free of tokio and tonic"
exit $status
