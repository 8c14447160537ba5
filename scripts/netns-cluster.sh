#!/usr/bin/env bash
# Several hosts on one machine: the coordinator and each node in a network namespace of its own
# (ip netns + veth on a bridge, addresses 10.77.0.10 and 10.77.0.11...), started by hand as
# docs/cluster.md "Nodes on several hosts" describes: certificates with `dprox certs`, each
# node's address in [[nodes]], `--listen 0.0.0.0:PORT`, `--tls-dir`. Needs root and iproute2.
#
#   scripts/netns-cluster.sh DPROX CONFIG OUT     # CONFIG: a config with [[nodes]] addresses
#
# Exits with the coordinator's status; OUT receives certs/, run/ and logs/.
set -euo pipefail
dprox=$(realpath "$1"); config=$(realpath "$2"); out=$3
n=$(grep -E '^\s*nodes\s*=' "$config" | head -n 1 | grep -oE '[0-9]+')
tag="dpx$$"
br="${tag}br"
cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$tag" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" || true
  done
  ip link del "$br" 2>/dev/null || true
  if command -v iptables >/dev/null; then
    iptables -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip link add "$br" type bridge
# Docker sets the FORWARD policy to DROP, and bridged frames pass iptables where br_netfilter
# is loaded: let the bridge's own traffic through.
if command -v iptables >/dev/null; then
  iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT
fi
ip addr add 10.77.0.1/24 dev "$br"
ip link set "$br" up
host() { # NAME ADDRESS: a namespace on the bridge
  ip netns add "$tag$1"
  ip link add "${tag}v$1" type veth peer name eth0 netns "$tag$1"
  ip link set "${tag}v$1" master "$br" up
  ip netns exec "$tag$1" ip addr add "$2/24" dev eth0
  ip netns exec "$tag$1" ip link set eth0 up
  ip netns exec "$tag$1" ip link set lo up
}
mkdir -p "$out/logs"
"$dprox" certs "$out/certs" --config "$config" >/dev/null
host c 10.77.0.10
ip netns exec "${tag}c" "$dprox" coordinator "$config" --listen 0.0.0.0:7000 --out "$out/run" \
  --tls-dir "$out/certs" > "$out/logs/coordinator.out" 2> "$out/logs/coordinator.log" &
coordinator=$!
for i in $(seq 0 $((n - 1))); do
  host "n$i" "10.77.0.$((11 + i))"
  ip netns exec "${tag}n$i" "$dprox" node "$config" --id "$i" --coordinator 10.77.0.10:7000 \
    --listen 0.0.0.0:7100 --out "$out/run" --tls-dir "$out/certs" 2> "$out/logs/node-$i.log" &
done
status=0
wait "$coordinator" || status=$?
wait || true
exit "$status"
