#!/usr/bin/env bash
# Two "hosts" on one machine: network namespaces NAME-a and NAME-b joined by a
# veth pair, addresses 10.N.0.1 (a) and 10.N.0.2 (b), the link shaped in both
# directions with tc (token bucket) to RATE, optionally with a one-way DELAY.
#   netns-link.sh up NAME RATE|none [DELAY]   e.g. up bnfl 1gbit 0.1ms
#   netns-link.sh down NAME
#   netns-link.sh cut NAME | heal NAME        take the link down / up again
#   netns-link.sh addr NAME a|b               prints the host's address
# Needs root (CAP_NET_ADMIN) and iproute2. Prints nothing on success but `addr`.
set -euo pipefail
cmd=${1:?usage: netns-link.sh up|down|cut|heal|addr NAME ...}
name=${2:?NAME}
# A stable /24 per name, so links of different names can coexist.
net=$((100 + $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 100))
va="${name:0:11}-va"
vb="${name:0:11}-vb"

burst_for() {  # a token bucket that holds ~4 ms of traffic, at least 256 KiB (GSO frames)
  python3 -c "
import re, sys
m = re.fullmatch(r'([0-9.]+)([kmg]?)bit', sys.argv[1].lower())
if not m: sys.exit('bad rate: ' + sys.argv[1])
bps = float(m[1]) * {'': 1, 'k': 1e3, 'm': 1e6, 'g': 1e9}[m[2]]
print(max(int(bps / 8 * 0.004), 256 * 1024))" "$1"
}

shape() {  # shape NS DEV RATE DELAY
  local ns=$1 dev=$2 rate=$3 delay=$4
  if [ "$rate" != none ]; then
    ip -n "$ns" link set "$dev" gso_max_size 65536 2>/dev/null || true
    if [ -n "$delay" ]; then
      tc -n "$ns" qdisc add dev "$dev" root handle 1: netem delay "$delay" limit 100000
      tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$rate" burst "$(burst_for "$rate")" latency 100ms
    else
      tc -n "$ns" qdisc add dev "$dev" root tbf rate "$rate" burst "$(burst_for "$rate")" latency 100ms
    fi
  elif [ -n "$delay" ]; then
    tc -n "$ns" qdisc add dev "$dev" root netem delay "$delay" limit 100000
  fi
}

case "$cmd" in
  up)
    rate=${3:?RATE (e.g. 1gbit, 10gbit, none)}
    delay=${4:-}
    "$0" down "$name" 2>/dev/null || true
    ip netns add "$name-a"
    ip netns add "$name-b"
    ip link add "$va" type veth peer name "$vb"
    ip link set "$va" netns "$name-a"
    ip link set "$vb" netns "$name-b"
    ip -n "$name-a" addr add "10.$net.0.1/24" dev "$va"
    ip -n "$name-b" addr add "10.$net.0.2/24" dev "$vb"
    for ns in a b; do ip -n "$name-$ns" link set lo up; done
    ip -n "$name-a" link set "$va" up
    ip -n "$name-b" link set "$vb" up
    shape "$name-a" "$va" "$rate" "$delay"
    shape "$name-b" "$vb" "$rate" "$delay"
    ;;
  down)
    ip netns pids "$name-a" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns pids "$name-b" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$name-a" 2>/dev/null || true
    ip netns del "$name-b" 2>/dev/null || true
    ;;
  cut) ip -n "$name-b" link set "$vb" down ;;  # the far end: the near one sees silence
  heal) ip -n "$name-b" link set "$vb" up ;;
  addr)
    case "${3:?a|b}" in a) echo "10.$net.0.1" ;; b) echo "10.$net.0.2" ;; *) exit 2 ;; esac ;;
  *) echo "netns-link.sh: unknown command $cmd" >&2; exit 2 ;;
esac
