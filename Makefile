# Every target installs what it needs into .venv first (pinned CPU torch, then the project).
# TORCH_INDEX names a wheel index for torch alone, e.g. https://download.pytorch.org/whl/cpu.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
ARGS   ?=

.PHONY: install train study test bench prey figures speed lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# make train: the fast preset cut to 3M env steps, minutes on 2 cores; make study: the study's schedule
# (the default config, 2M env steps, about 2.5 hours). Both pass overrides: ARGS="train.seed=1".
train: $(STAMP)  ## a run of minutes, then its learning curve, GIF and a one-line evaluation summary
	$(PY) train.py --config configs/fast.yaml train.total_steps=3000000 $(ARGS)

study: $(STAMP)  ## the study's schedule
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)  ## writes runs/bench.json
	$(PY) -m maddpg.bench --out runs/bench.json $(ARGS)

# The shipped prey: predators and prey trained together from scratch at the default (study)
# config, seed 0; the weak prey is the prey at 1M env steps, the strong one at 2M. About 2 hours
# on 2 cores. An interrupted run resumes from its latest checkpoint (one every 100k steps).
PREY_RUN   := runs/prey_training
PREY_TRAIN := train.py run.name=prey_training train.seed=0 train.total_steps=2000000 \
              train.checkpoint_every=100000 train.keep_checkpoints=20 run.threads=2 run.gif=false
prey: $(STAMP)  ## trains runs/prey_training, then ships maddpg/pretrained_prey/{weak,strong}.pt
	$(PY) $(PREY_TRAIN) $$(test -d $(PREY_RUN) && echo --resume $(PREY_RUN))
	$(PY) -m maddpg.prey export $(PREY_RUN) --steps 1000000 --name weak --command "make prey: python $(PREY_TRAIN)"
	$(PY) -m maddpg.prey export $(PREY_RUN) --steps 2000000 --name strong --command "make prey: python $(PREY_TRAIN)"

figures: $(STAMP)  ## the study's Figs. 3-6: 50k env steps per learner, 3 seeds, about an hour on 2 cores
	$(PY) -m maddpg.experiments --out runs/figures $(ARGS)

speed: $(STAMP)  ## configs/fast.yaml against the default schedule in wall-clock (README); about 2 hours on 2 cores
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
