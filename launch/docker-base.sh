#!/usr/bin/env bash
# make docker-base: a base image made from Debian's packages, for machines that reach Debian's
# archive but no image registry: Debian bookworm (python3 3.11, its venv module, CA certificates),
# bootstrapped with debootstrap and imported as an image. Needs root and debootstrap.
#   TAG=maddpg-base:bookworm   MIRROR=http://deb.debian.org/debian   DOCKER=docker
set -euo pipefail
TAG=${TAG:-maddpg-base:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DOCKER=${DOCKER:-docker}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$MIRROR"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$DOCKER" import - "$TAG"
echo "docker-base: $TAG"
