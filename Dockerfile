# The trainer and its tests in an image, installed by the same `make install` that CI runs.
#
#   make docker-test        # builds this image and runs the test suite in it (launch/docker-test.sh)
#
# or by hand:
#
#   docker build -t maddpg-tag .
#   docker run --rm maddpg-tag make test
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/runs:/home/trainer/maddpg/runs" \
#       maddpg-tag make train ARGS="train.total_steps=20000"    # the run lands in ./runs, yours
#
# CPU torch by default. The CUDA wheels carry their own CUDA runtime, so the same base serves a GPU
# image (run it with --gpus all on a host with the NVIDIA driver and container toolkit):
#
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t maddpg-tag:cuda .
#   docker run --rm --gpus all maddpg-tag:cuda make train ARGS="run.device=cuda"
#
# (cu128: a CUDA version the torch release is built for and the host's driver supports.)
#
# Behind a TLS proxy, pip needs the proxy's CA. Pass it as a build secret, which only the install
# step sees and the image does not keep (BuildKit):
#
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t maddpg-tag .
#
# BASE: by default the Python that CI tests with; any Debian-family image with python3 (3.11+)
# and its venv module will do (launch/docker-base.sh makes one from Debian's packages).
ARG BASE=python:3.11-slim
FROM ${BASE}

# TORCH_INDEX: torch's wheel index ('' for the package registry). WHEELS: more wheels for pip
# (--find-links), e.g. a loopback URL serving the pinned CPU torch; '' for none.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG WHEELS=
ENV PIP_NO_CACHE_DIR=1

# make is the only tool the Makefile and the tests need beyond python3; the base image's release
# fixes its version. apt's package caches go with its lists: the image does not install again.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# Not root; numeric, so that a runtime that refuses root (runAsNonRoot) can check it.
# The work directory is made here, as root, for the user: WORKDIR would leave a new one root's.
RUN useradd --create-home --no-log-init --uid 10001 trainer \
    && install -d -o trainer -g trainer /home/trainer/maddpg
USER 10001
WORKDIR /home/trainer/maddpg
COPY --chown=trainer:trainer . .
RUN --mount=type=secret,id=ca,uid=10001 \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && if [ -n "${WHEELS}" ]; then export PIP_FIND_LINKS="${WHEELS}"; fi \
    && make install TORCH_INDEX="${TORCH_INDEX}" EXTRAS=test
ENV PATH=/home/trainer/maddpg/.venv/bin:$PATH

CMD ["make", "test"]
