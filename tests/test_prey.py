"""Prey that do not learn: prey files, loading checks, and targets that equal the loaded actor."""

import pytest
import torch

import train
from conftest import random_batch
from maddpg.core.config import EnvConfig, load_config
from maddpg.core.errors import ConfigError
from maddpg.core.learner import Maddpg
from maddpg.core.networks import StackedMLP
from maddpg.core.pretrained import manifest, record, resolve_prey, sha256
from maddpg.core.prey import export, load_prey, prey_payload

OBS_DIMS = (16, 16, 16, 14)


def write_prey(path, env=None, seed=5):
    env = env or EnvConfig()
    torch.manual_seed(seed)
    actor = StackedMLP(env.num_good, 16, [8, 8], 5, sigmoid_output=True)
    torch.save(prey_payload(actor, env, obs_dim=16, act_dim=5, hidden=[8, 8]), path)
    return actor


def test_loaded_prey_acts_like_the_saved_actor_and_is_frozen(tmp_path):
    saved = write_prey(tmp_path / "prey.pt")
    prey = load_prey(str(tmp_path / "prey.pt"), EnvConfig(), obs_dim=16, act_dim=5, device="cpu")
    obs = torch.randn(7, 1, 16)
    torch.testing.assert_close(prey.act(obs), saved(obs.transpose(0, 1)).transpose(0, 1))
    assert not any(p.requires_grad for p in prey.parameters())


def test_critic_targets_use_the_loaded_prey_not_a_random_init(tmp_path):
    """The study's implementation copied target networks before loading the prey, so its critics
    bootstrapped with a random prey. Here a fixed prey's target action is the loaded actor's."""
    saved = write_prey(tmp_path / "prey.pt")
    prey = load_prey(str(tmp_path / "prey.pt"), EnvConfig(), obs_dim=16, act_dim=5, device="cpu")
    cfg = load_config(None, ["maddpg.hidden=[8,8]"]).maddpg
    learner = Maddpg(list(OBS_DIMS), 5, 3, cfg, prey, torch.Generator(), torch.Generator())
    next_obs = random_batch(9, OBS_DIMS).next_obs
    target_prey_action = learner.target_actions(next_obs)[:, 3]
    expected = saved(next_obs[:, 3:].transpose(0, 1)).transpose(0, 1)[:, 0]
    torch.testing.assert_close(target_prey_action, expected)


def test_prey_for_other_teams_is_refused(tmp_path):
    write_prey(tmp_path / "prey.pt", env=EnvConfig(num_adversaries=2))
    with pytest.raises(ConfigError, match="trained for"):
        load_prey(str(tmp_path / "prey.pt"), EnvConfig(), obs_dim=16, act_dim=5, device="cpu")


def test_a_file_that_is_not_a_prey_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a prey file"):
        load_prey(str(tmp_path / "other.pt"), EnvConfig(), obs_dim=16, act_dim=5, device="cpu")


def test_shipped_prey_resolve_by_name_and_a_tampered_file_is_refused(tmp_path):
    write_prey(tmp_path / "weak.pt")
    manifest = tmp_path / "manifest.json"
    record("weak", tmp_path / "weak.pt", {"env_steps": 1000}, manifest)
    assert resolve_prey("weak", manifest) == tmp_path / "weak.pt"
    data = bytearray((tmp_path / "weak.pt").read_bytes())
    data[-100] ^= 1  # one flipped bit
    (tmp_path / "weak.pt").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="does not match the sha256"):
        resolve_prey("weak", manifest)
    with pytest.raises(ConfigError, match=r"name a shipped prey \(weak\)"):
        resolve_prey("strong", manifest)


def test_export_ships_a_runs_prey_with_its_provenance(tmp_path, run_args):
    train.main(run_args("teacher", "train.total_steps=300", "run.gif=false"))
    run = tmp_path / "teacher"
    shipped = export(run, 300, "weak", "python train.py ...", prey_dir=tmp_path)
    entry = manifest(tmp_path / "manifest.json")["weak"]
    assert entry["file"] == "weak.pt" and entry["sha256"] == sha256(shipped)
    assert (entry["env_steps"], entry["seed"], entry["command"]) == (300, 0, "python train.py ...")
    assert entry["config"]["train"]["total_steps"] == 300
    final = torch.load(run / "prey.pt", weights_only=True)  # the run's own export at its end, step 300
    assert all(torch.equal(v, final["actor"][k]) for k, v in torch.load(shipped, weights_only=True)["actor"].items())
    with pytest.raises(ConfigError, match="no checkpoint at 200"):
        export(run, 200, "weak", "", prey_dir=tmp_path)
