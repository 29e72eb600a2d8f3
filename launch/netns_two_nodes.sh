#!/usr/bin/env bash
# Two nodes on one machine: launch/node.sh in each of two network namespaces joined by a veth
# pair, so the c10d rendezvous and gloo's traffic cross a network link, not loopback. Needs root.
#
#   sudo launch/netns_two_nodes.sh data "$PWD/runs/two_nodes" --config "$PWD/configs/smoke.yaml" run.name=two
#
# Node n (0 or 1) has address 10.77.0.(n+1) on interface ID-n and works in OUT/node<n>, which
# stands for its own disk: relative paths in the train.py arguments resolve there (give --config
# as an absolute path). Its output goes to OUT/node<n>.log. Environment: NPROC (ranks per node, 1),
# PYTHON (as in node.sh), ID (names the namespaces, the interfaces and the rendezvous; at most 13
# characters; default nn<pid>, so that runs side by side do not clash). Exits 0 when both nodes do.
#
# Shaping the link, each way (tc on both ends): RATE (e.g. 1gbit) caps its bandwidth with a token
# bucket (tbf); DELAY (e.g. 0.13ms) adds a one-way delay with netem, which some kernels lack (the
# script then stops and says so). Unset, the link is a bare veth.
set -euo pipefail

MODE=${1:?usage: $0 MODE OUT [train.py arguments...]}
OUT=${2:?usage: $0 MODE OUT [train.py arguments...]}
shift 2
LAUNCH=$(cd "$(dirname "$0")" && pwd)
ID=${ID:-nn$$}

cleanup() {
    for n in 0 1; do
        # Every process in the namespace is this run's: the namespace was made for it.
        ip netns pids "$ID-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns delete "$ID-$n" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # so that a signal runs the EXIT trap too

ip netns add "$ID-0"
ip netns add "$ID-1"
ip link add "$ID-0" netns "$ID-0" type veth peer name "$ID-1" netns "$ID-1"
for n in 0 1; do
    ip -n "$ID-$n" addr add "10.77.0.$((n + 1))/24" dev "$ID-$n"
    ip -n "$ID-$n" link set lo up
    ip -n "$ID-$n" link set "$ID-$n" up
    if [[ -n ${DELAY:-} ]]; then
        ip netns exec "$ID-$n" tc qdisc add dev "$ID-$n" root netem delay "$DELAY" ${RATE:+rate "$RATE"} ||
            { echo "DELAY needs tc's netem, which this kernel lacks: unset DELAY (RATE alone uses tbf)" >&2; exit 2; }
    elif [[ -n ${RATE:-} ]]; then
        # The bucket holds 256 KiB (2 ms at 1 Gbit/s, above the one timer tick tbf needs); a packet
        # waits up to 50 ms for tokens before it is dropped, so TCP paces itself to the rate.
        ip netns exec "$ID-$n" tc qdisc add dev "$ID-$n" root tbf rate "$RATE" burst 256kb latency 50ms
    fi
done

export MASTER=10.77.0.1 NNODES=2 NPROC=${NPROC:-1} JOB_ID=$ID
for n in 0 1; do
    mkdir -p "$OUT/node$n"
    (cd "$OUT/node$n" && exec ip netns exec "$ID-$n" env IFNAME="$ID-$n" "$LAUNCH/node.sh" --mode "$MODE" "$@") \
        >"$OUT/node$n.log" 2>&1 &
done
for _ in 0 1; do
    wait -n || exit 1  # a failed node ends the other one (in cleanup) rather than leave it waiting
done
