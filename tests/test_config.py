"""Configuration: defaults, files, overrides and the one-line errors that stop a bad run early."""

import os
import subprocess
import sys

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from maddpg.core.config import PreyMode, leaves, load_config
from maddpg.core.errors import ConfigError


def test_defaults_are_the_studys_hyperparameters():
    cfg = load_config()
    m, ex = cfg.maddpg, cfg.explore
    assert (m.actor_lr, m.critic_lr, m.gamma, m.tau, m.target_update_every) == (1e-3, 1e-4, 0.95, 0.01, 10)
    assert (m.batch_size, m.buffer_size, m.hidden, m.updates_per_step) == (256, 500_000, [64, 64], 1.0)
    assert (ex.epsilon, ex.noise_std, ex.decay, ex.floor) == (0.1, 0.1, 5e-7, 0.05)
    assert (cfg.env.num_adversaries, cfg.env.num_good, cfg.env.num_obstacles, cfg.env.max_cycles) == (3, 1, 2, 50)
    assert (cfg.train.eval_every, cfg.train.eval_episodes) == (1000, 20)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_loads(path):
    load_config(str(path))


def test_overrides_apply_over_the_file_with_types():
    cfg = load_config(str(ROOT / "configs" / "smoke.yaml"), ["maddpg.hidden=[8,4]", "prey.mode=random"])
    assert cfg.maddpg.hidden == [8, 4] and cfg.prey.mode is PreyMode.random
    assert cfg.train.total_steps == 600  # from the file
    assert cfg.n_learners == 3


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["train.totl_steps=5"], "train.totl_steps"),
        (["maddpg.batch_size=big"], "maddpg.batch_size"),
        (["prey.mode=sleepy"], "prey.mode"),
        (["maddpg.actor_lr=-1e-3"], "maddpg.actor_lr"),
        (["maddpg.batch_size=1000", "maddpg.buffer_size=100", "maddpg.learning_starts=100"], "maddpg.buffer_size"),
        (["explore.epsilon=1.5"], "explore.epsilon"),
        (["train.total_steps=0"], "train.total_steps"),
        (["prey.mode=fixed"], "prey.checkpoint"),
        (["prey.mode=fixed", "prey.checkpoint=no/such/prey.pt"], "no/such/prey.pt"),
        (["total_steps"], "key=value"),
        (["run.device=gpu"], "run.device"),
        (["mode=genetic", "genetic.quantile=0.8"], "genetic.quantile"),
        (["mode=genetic", "genetic.min_period=9", "genetic.max_period=8"], "genetic.min_period"),
        (["mode=genetic", "genetic.strategy=clone"], "genetic.strategy"),
    ],
)
def test_bad_values_name_the_key(overrides, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.yaml")


def test_cli_error_exits_2_with_one_line_before_creating_the_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"run.dir={tmp_path}", "run.name=x", "maddpg.gamma=2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "maddpg.gamma" in result.stderr
    assert not (tmp_path / "x").exists()


# -- fuzzing: every override list and every YAML file either loads or stops with one ConfigError line --

KEYS = sorted(key for key, _ in leaves(load_config()))
SECTIONS = sorted({key.split(".")[0] for key in KEYS})
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats().map(str),
    st.sampled_from(["[64,64]", "[]", "[0]", "[", "]", "{a: 1}", "{", "null", "~", "true", "nan", "-inf", "1e999",
                     "'x'", '"', "${oc.env:HOME}", "${x}", "[1, [2]]", ": :", "- a", "\x00", "cuda:7", "fixed"]),
)  # fmt: skip
ITEMS = st.one_of(
    st.builds("{}={}".format, st.one_of(st.sampled_from(KEYS + SECTIONS), st.text(max_size=12)), VALUES),
    st.text(max_size=20),
)
# The same examples on every run, so CI is reproducible; FUZZ_RANDOM=1 explores new ones.
FUZZ = settings(max_examples=150, deadline=None, derandomize=os.environ.get("FUZZ_RANDOM") != "1")


def test_an_error_quoting_line_breaks_stays_one_line():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.a\u2028b\nc=1"])
    assert len(str(info.value).splitlines()) == 1


def loads_or_stops_cleanly(*args, **kwargs) -> None:
    try:
        load_config(*args, **kwargs)
    except ConfigError as error:
        assert "\n" not in str(error)


@FUZZ
@given(st.lists(ITEMS, max_size=4))
def test_fuzzed_overrides_load_or_raise_config_error(overrides):
    loads_or_stops_cleanly(None, overrides)


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), VALUES)
YAML_TREES = st.recursive(YAML_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.one_of(st.sampled_from(SECTIONS + [k.split(".")[-1] for k in KEYS]), st.text(max_size=6)), inner, max_size=3),
    max_leaves=8)  # fmt: skip


@FUZZ
@given(st.one_of(st.text(max_size=60), YAML_TREES.map(yaml.safe_dump), st.binary(max_size=40)))
@example("'0'")  # a top-level scalar: OmegaConf.load asserts
def test_fuzzed_yaml_files_load_or_raise_config_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    loads_or_stops_cleanly(str(path))


@FUZZ
@given(st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(
    [k.split(".")[-1] for k in KEYS]), VALUES, max_size=3), max_size=3))  # fmt: skip
def test_fuzzed_yaml_with_real_keys_loads_or_raises_config_error(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    loads_or_stops_cleanly(str(path))
