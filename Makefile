# Every target installs what it needs into .venv first (pinned CPU torch, then the project).
# TORCH_INDEX names a wheel index for torch alone, e.g. https://download.pytorch.org/whl/cpu.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
ARGS   ?=
# EXTRAS: the project's extras; the image takes test, the suite without make lint's tools
EXTRAS ?= dev

.PHONY: install train study test docs bench scaling prey predators figures speed lint format clean docker-test docker-base

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# make train: the fast preset cut to 3M env steps, minutes on 2 cores; make study: the study's schedule
# (the default config, 2M env steps, about 2.5 hours). Both pass overrides: ARGS="train.seed=1".
train: $(STAMP)  ## a run of minutes, then its learning curve, GIF and a one-line evaluation summary
	$(PY) train.py --config configs/fast.yaml train.total_steps=3000000 $(ARGS)

study: $(STAMP)  ## the study's schedule
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# The documentation site, docs/*.md and mkdocs.yml, into build/site. --strict: a broken link, a broken
# anchor or a page missing from the nav fails the build (and CI).
docs: $(STAMP)  ## builds the documentation site into build/site
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# The image: launch/docker-test.sh builds it from the Dockerfile and runs the test suite in it.
# Its options (BASE, CA_BUNDLE, TORCH_INDEX, WHEELS, IMAGE, DOCKER, ARGS) are make variables, e.g.
# with no image registry, behind a TLS proxy, the pinned torch's wheel on disk (docs/deployment.md, "Docker"):
#   make docker-base && make docker-test BASE=maddpg-base:bookworm TORCH_INDEX= WHEELS=DIR \
#       CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
docker-test:  ## builds the image and runs the test suite in it
	launch/docker-test.sh

docker-base:  ## a Debian base image from debootstrap (root), for machines without an image registry
	launch/docker-base.sh

bench: scaling  ## writes runs/bench.json, and the scaling section's runs/scaling.{json,png}
	$(PY) -m maddpg.bench --out runs/bench.json $(ARGS)

# Teams of 4 to 48 agents: single mode on one core and on 2 threads, each mode on 2 ranks, over
# loopback and (as root) across a veth link shaped like EC2's; the cost model's error and predictions.
# About 25 minutes on 2 idle cores.
scaling: $(STAMP)  ## writes runs/scaling.json and runs/scaling.png
	$(PY) -m maddpg.scaling --out runs/scaling.json

# The shipped prey: predators and prey trained together from scratch on the fast schedule, seed 0,
# 8M env steps with a checkpoint every 500k; every checkpoint's prey is a candidate, and the weak and
# strong prey are chosen and shipped by measured difficulty (maddpg/difficulty.py): fresh predators
# trained 1M env steps against each. About 2 hours on 2 cores; an interrupted command resumes.
# ACTIONS=discrete: the same with discrete actions, shipped as weak_discrete and strong_discrete.
ACTIONS    ?= continuous
DISCRETE   := $(filter discrete,$(ACTIONS))
PREY_RUN   := runs/prey_fast$(if $(DISCRETE),_discrete)
PREY_TRAIN := train.py --config configs/fast.yaml run.name=prey_fast$(if $(DISCRETE),_discrete) train.seed=0 \
              train.total_steps=8000000 train.checkpoint_every=500000 train.keep_checkpoints=16 run.gif=false \
              run.progress=false$(if $(DISCRETE), env.actions=discrete)
prey: $(STAMP)  ## trains runs/prey_fast, ships maddpg/core/pretrained_prey/{weak,strong}.pt (ACTIONS=discrete: *_discrete)
	$(PY) $(PREY_TRAIN) $$(test -d $(PREY_RUN) && echo --resume $(PREY_RUN))
	$(PY) -m maddpg.difficulty ship $(PREY_RUN) --jobs 2 --command "make prey: python $(PREY_TRAIN)"

# The shipped predators: the recipe configs/predators.yaml, seed 0 (about 45 minutes on one core; an
# interrupted command resumes), shipped as maddpg/core/pretrained_predators/random_prey_8m, then its suite.
PRED_RUN   := runs/predators_s0
PRED_TRAIN := train.py --config configs/predators.yaml run.name=predators_s0 train.seed=0 run.progress=false
predators: $(STAMP)  ## trains runs/predators_s0, ships its predators, prints their suite against the greedy team
	$(PY) $(PRED_TRAIN) $$(test -d $(PRED_RUN) && echo --resume $(PRED_RUN))
	$(PY) -m maddpg.core.pretrained ship $(PRED_RUN) --name random_prey_8m --command "make predators: python $(PRED_TRAIN)"
	$(PY) -m maddpg.evaluate maddpg/core/pretrained_predators/random_prey_8m --suite

# make figures: the study's Figs. 3-6 at a short budget (50k env steps per learner, 3 seeds, about an
# hour on 2 cores); BUDGET=full: the study's budget, 2M env steps per learner, 4 learners, 5 seeds,
# on the fast schedule (maddpg/experiments.py; about 26 CPU hours). Both resume when run again.
BUDGET ?= short
JOBS   ?= 2
figures: $(STAMP)  ## the study's Figs. 3-6 and their tables into runs/figures (BUDGET=full: runs/figures_full)
	$(PY) -m maddpg.experiments --budget $(BUDGET) --jobs $(JOBS) $(ARGS)

speed: $(STAMP)  ## configs/fast.yaml against the default schedule in wall-clock (docs/fast-preset.md); about 2 hours on 2 cores
	$(PY) -m maddpg.speedup --out runs/speed $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
