#!/bin/bash
# EC2 user data for every node of a job (Ubuntu 24.04; cloud-init runs it as root at first boot).
# Set REPO and the job below, or per launch with instance tags (instance metadata tags enabled):
# Master, Nnodes, Nproc, Job, TrainArgs. The training runs as the systemd unit `maddpg`:
# `journalctl -u maddpg -f` follows it. See launch/README.md.
set -euo pipefail

REPO=https://example.com/maddpg-tag.git  # your clone URL
HOME_DIR=/home/ubuntu
IMDS=http://169.254.169.254/latest

setting() {  # the instance tag $1 when the instance has it, else $2
    local token tagged=""
    if token=$(curl -sf -X PUT "$IMDS/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 60"); then
        tagged=$(curl -sf -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/tags/instance/$1") || true
    fi
    echo "${tagged:-$2}"
}
MASTER=$(setting Master 10.0.1.10)  # node 0's private IP
NNODES=$(setting Nnodes 2)
NPROC=$(setting Nproc 8)
JOB_ID=$(setting Job gen16)
TRAIN_ARGS=$(setting TrainArgs "--mode genetic run.threads=1 run.name=gen16")

apt-get update
apt-get install -y --no-install-recommends git make python3-venv
runuser -u ubuntu -- git clone --depth 1 "$REPO" "$HOME_DIR/maddpg"
runuser -u ubuntu -- make -C "$HOME_DIR/maddpg" install TORCH_INDEX=https://download.pytorch.org/whl/cpu

# TRAIN_ARGS is a list of train.py arguments: split on spaces on purpose.
# shellcheck disable=SC2086
systemd-run --unit=maddpg --uid=ubuntu --working-directory="$HOME_DIR/maddpg" \
    --setenv=MASTER="$MASTER" --setenv=NNODES="$NNODES" --setenv=NPROC="$NPROC" --setenv=JOB_ID="$JOB_ID" \
    "$HOME_DIR/maddpg/launch/node.sh" $TRAIN_ARGS
