# The trainer and its tests in an image, installed by the same `make install` that CI runs.
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
# BASE: by default the Python that CI tests with; any Debian-family image with python3 (3.11+)
# and its venv module will do.
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1

# make is the only tool the Makefile needs beyond python3; the base image's release fixes its version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# Not root; numeric, so that a runtime that refuses root (runAsNonRoot) can check it.
# The work directory is made here, as root, for the user: WORKDIR would leave a new one root's.
RUN useradd --create-home --no-log-init --uid 10001 trainer \
    && install -d -o trainer -g trainer /home/trainer/maddpg
USER 10001
WORKDIR /home/trainer/maddpg
COPY --chown=trainer:trainer . .
RUN make install TORCH_INDEX=${TORCH_INDEX}
ENV PATH=/home/trainer/maddpg/.venv/bin:$PATH

CMD ["make", "test"]
