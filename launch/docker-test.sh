#!/usr/bin/env bash
# make docker-test: builds the image from the Dockerfile and runs the test suite in it.
#
# Options, from the environment (make passes its variables of the same names):
#   BASE=IMAGE       the base image (the Dockerfile's default: python:3.11-slim); launch/docker-base.sh
#                    builds one from Debian's packages where no image registry is reachable
#   CA_BUNDLE=FILE   a CA bundle for pip's TLS (e.g. a proxy's), a build secret: the image keeps none
#   TORCH_INDEX=URL  torch's wheel index; set to '' for the package registry
#   WHEELS=DIR       a directory of wheels (e.g. the pinned CPU torch) that pip may install from;
#                    served to the build on loopback, which then uses the host's network
#   IMAGE=TAG        the image's name (maddpg-tag:test); DOCKER=CLIENT the docker client (docker)
#   ARGS=...         pytest's arguments inside the image
# The build needs BuildKit (Docker 23+, or DOCKER_BUILDKIT=1 with a client that has it).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
IMAGE=${IMAGE:-maddpg-tag:test}
build=(--tag "$IMAGE")
[[ -n ${BASE:-} ]] && build+=(--build-arg "BASE=$BASE")
[[ -n ${TORCH_INDEX+set} ]] && build+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
[[ -n ${CA_BUNDLE:-} ]] && build+=(--secret "id=ca,src=$CA_BUNDLE")
if [[ -n ${WHEELS:-} ]]; then
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WHEELS" >/dev/null 2>&1 &
    server=$!
    trap 'kill "$server"' EXIT
    build+=(--network host --build-arg "WHEELS=http://127.0.0.1:$port/")
fi

start=$SECONDS
DOCKER_BUILDKIT=1 "$DOCKER" build "${build[@]}" .
echo "docker-test: built $IMAGE in $((SECONDS - start)) s," \
    "$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"
start=$SECONDS
"$DOCKER" run --rm "$IMAGE" make test ARGS="${ARGS:-}"
echo "docker-test: the test suite passed in $IMAGE in $((SECONDS - start)) s"
