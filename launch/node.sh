#!/usr/bin/env bash
# One node's part of a multi-node job: prints its torchrun command, then runs it (DRY_RUN=1 only
# prints). Start it on every node with the same MASTER, NNODES, NPROC and JOB_ID; its arguments go
# to train.py. The c10d rendezvous numbers the nodes, so no node needs a rank of its own.
#
#   MASTER=10.0.1.10 NNODES=2 NPROC=4 launch/node.sh --mode data run.threads=2 run.name=data_2x4
#
# MASTER  private IP of the node that serves the rendezvous (required); PORT its port (29400)
# NNODES  nodes in the job (2); NPROC ranks on each node (1)
# JOB_ID  the rendezvous id, the same on every node of one job (maddpg)
# MAX_RESTARTS  torchrun restarts the job this often after a failure, resuming its run (0)
# IFNAME  the interface the nodes share, for gloo and NCCL (default: the default route's, e.g. ens5)
# PYTHON  the interpreter (default: the repository's .venv/bin/python)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MASTER=${MASTER:?set MASTER to the private IP of the node that serves the rendezvous}
IFNAME=${IFNAME:-$(ip -o -4 route show default | awk '{print $5; exit}')}
: "${IFNAME:?no default route: set IFNAME to the interface the nodes share}"
# This node's address on that interface: the one the other nodes reach it at.
ADDR=$(ip -o -4 addr show dev "$IFNAME" | awk '{sub(/\/.*/, "", $4); print $4; exit}')
: "${ADDR:?no IPv4 address on $IFNAME}"
# Said rather than left to torchrun, which guesses both from the hostname: with several interfaces,
# or in a network namespace, the hostname's address is not the one the nodes share.
IS_HOST=0
[[ $ADDR == "$MASTER" ]] && IS_HOST=1
export GLOO_SOCKET_IFNAME=$IFNAME NCCL_SOCKET_IFNAME=$IFNAME
# Restarted workers must not reuse the rendezvous store's stale addresses (see maddpg/distributed/elastic.py).
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

command=("${PYTHON:-$ROOT/.venv/bin/python}" -m torch.distributed.run
    --nnodes="${NNODES:-2}" --nproc-per-node="${NPROC:-1}" --max-restarts="${MAX_RESTARTS:-0}"
    --rdzv-backend=c10d --rdzv-endpoint="$MASTER:${PORT:-29400}" --rdzv-id="${JOB_ID:-maddpg}"
    --rdzv-conf="is_host=$IS_HOST" --local-addr="$ADDR"
    "$ROOT/train.py" "$@")
echo "GLOO_SOCKET_IFNAME=$IFNAME NCCL_SOCKET_IFNAME=$IFNAME TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 ${command[*]}" >&2
[[ ${DRY_RUN:-0} == 1 ]] || exec "${command[@]}"
