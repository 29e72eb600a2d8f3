"""Discrete actions (env.actions=discrete): the Gumbel-softmax MADDPG of Lowe et al. 2017, through the same update."""

import copy

import pytest
import torch

import train
from conftest import SMOKE, evaluated, fails, random_batch, toy_learner
from maddpg.core.config import Actions, EnvConfig, load_config
from maddpg.core.envs import make_env
from maddpg.core.learner import gumbel_softmax, one_hot
from maddpg.core.metrics import read_rows
from maddpg.core.networks import StackedMLP
from maddpg.core.prey import load_prey, prey_payload

OBS_DIMS = (6, 6, 6, 5)


def learner(straight_through=False, **kwargs):
    return toy_learner(4, OBS_DIMS, 5, "learn", 0, "cpu", True, f"maddpg.straight_through={straight_through}", **kwargs)


def one_hot_batch(size: int):
    batch = random_batch(size, OBS_DIMS)
    return batch._replace(act=one_hot(batch.act.argmax(-1), 5))  # the buffer holds the moves played


def reference_losses(learner, batch, generator):
    """Discrete MADDPG per agent with plain loops, drawing the Gumbel noise as the learner does: every
    learner's uniform draws for the targets, then every learner's for the actor loss."""
    n, cfg = learner.n_learners, learner.cfg
    b = batch.obs.shape[0]

    def logits_k(actor, k, obs):
        x = obs[:, k]
        for i, layer in enumerate(actor.layers):
            x = x @ layer.weight[k] + layer.bias[k]
            x = torch.relu(x) if i < len(actor.layers) - 1 else x
        return x

    def critic_k(critic, k, obs, act):
        x = torch.cat([obs.flatten(1)[:, learner.obs_cols], act.flatten(1)], dim=1)
        for i, layer in enumerate(critic.layers):
            x = x @ layer.weight[k] + layer.bias[k]
            x = torch.relu(x) if i < len(critic.layers) - 1 else x
        return x.squeeze(-1)

    def sample(logits, uniform):
        soft = ((logits - torch.log(-torch.log(uniform))) / cfg.gumbel_temperature).softmax(-1)
        hard = one_hot(soft.argmax(-1), 5)
        return hard - soft.detach() + soft if cfg.straight_through else soft

    u_target, u_actor = (torch.rand(n, b, 5, generator=generator) for _ in range(2))
    with torch.no_grad():
        next_act = torch.stack(
            [sample(logits_k(learner.target_actor, k, batch.next_obs), u_target[k]) for k in range(n)], 1
        )
    critic_losses, actor_losses = [], []
    for i in range(n):
        with torch.no_grad():
            y = batch.rew[:, i] + cfg.gamma * critic_k(learner.target_critic, i, batch.next_obs, next_act)
        critic_losses.append(((critic_k(learner.critic, i, batch.obs, batch.act) - y) ** 2).mean())
        act = batch.act.clone()
        logits = logits_k(learner.actor, i, batch.obs)
        act[:, i] = sample(logits, u_actor[i])
        q = critic_k(learner.critic, i, batch.obs, act)
        actor_losses.append(-q.mean() + cfg.logit_penalty * logits.square().mean())
    return torch.stack(critic_losses), torch.stack(actor_losses)


def grads(module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("straight_through", [False, True], ids=["relaxed", "straight_through"])
def test_stacked_discrete_losses_and_gradients_equal_the_per_agent_reference(straight_through):
    learner_ = learner(straight_through)
    with torch.no_grad():
        for p in [*learner_.target_actor.parameters(), *learner_.target_critic.parameters()]:
            p.add_(0.3 * torch.randn_like(p))
    batch = one_hot_batch(32)
    draws = copy.deepcopy(learner_.update_generator)
    critic, actor = learner_.critic_losses(batch), learner_.actor_losses(batch)
    critic_ref, actor_ref = reference_losses(learner_, batch, draws)
    torch.testing.assert_close(critic, critic_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(actor, actor_ref, rtol=1e-5, atol=1e-6)
    for loss, reference, module in ((critic, critic_ref, learner_.critic), (actor, actor_ref, learner_.actor)):
        module.zero_grad()
        loss.sum().backward(inputs=list(module.parameters()))
        stacked = grads(module)
        module.zero_grad()
        reference.sum().backward(inputs=list(module.parameters()))
        for a, b in zip(stacked, grads(module), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_straight_through_samples_are_one_hot_with_the_relaxed_gradient():
    logits = torch.randn(64, 5, requires_grad=True)
    uniform = torch.rand(64, 5, generator=torch.Generator().manual_seed(0))
    hard, soft = gumbel_softmax(logits, uniform, 0.5, True), gumbel_softmax(logits, uniform, 0.5, False)
    assert torch.equal(hard.detach(), one_hot(soft.argmax(-1), 5))
    weights = torch.randn(64, 5)
    (g_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * weights).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)


def test_acting_plays_one_hot_moves_the_argmax_without_exploration_samples_with_it():
    learner_ = learner()
    obs = random_batch(4000, OBS_DIMS).obs
    greedy = learner_.act(obs)
    assert torch.equal(greedy, one_hot(learner_.learner_actions(obs).argmax(-1), 5))
    explored = learner_.act(obs, epsilon=0.0, noise_std=0.1)
    assert torch.equal(explored.sum(-1), torch.ones(4000, 4))
    with torch.no_grad():
        probs = learner_.learner_actions(obs).softmax(-1).mean(0)  # the policy's own move frequencies
    torch.testing.assert_close(explored.mean(0), probs, atol=0.03, rtol=0)
    uniform = learner_.act(obs, epsilon=1.0, noise_std=0.0)
    torch.testing.assert_close(uniform.mean(0), torch.full((4, 5), 0.2), atol=0.03, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "mpe2"])
def test_envs_play_the_argmax_of_one_hot_actions(backend):
    cfg = EnvConfig(backend=backend, n_envs=2, actions=Actions.discrete)
    by_index, by_one_hot = make_env(cfg), make_env(cfg)
    index = torch.randint(5, (2, 4), generator=torch.Generator().manual_seed(0))
    for env in (by_index, by_one_hot):
        env.reset((0, 0, 0))
    a, b = by_index.step(index), by_one_hot.step(one_hot(index, 5))
    for x, y in zip(a[:2], b[:2], strict=True):
        assert torch.equal(x, y)


def test_a_prey_plays_its_argmax_in_a_discrete_run():
    learner_ = toy_learner(3, OBS_DIMS, 5, "random", 0, "cpu", True)
    acts = learner_.act(random_batch(8, OBS_DIMS).obs)
    assert torch.equal(acts.sum(-1), torch.ones(8, 4))


def write_prey(path, actions: Actions):
    env = EnvConfig(actions=actions)
    actor = StackedMLP(env.num_good, 16, [8, 8], 5, sigmoid_output=not env.discrete)
    torch.save(prey_payload(actor, env, obs_dim=16, act_dim=5, hidden=[8, 8]), path)


def test_a_prey_file_loads_only_into_runs_of_its_own_action_type(tmp_path, capsys):
    write_prey(tmp_path / "discrete.pt", Actions.discrete)
    discrete = EnvConfig(actions=Actions.discrete)
    logits = load_prey(str(tmp_path / "discrete.pt"), discrete, 16, 5, "cpu").act(torch.randn(3, 1, 16))
    assert not ((logits >= 0) & (logits <= 1)).all()  # no sigmoid: logits
    err = fails(["--config", SMOKE, "env.actions=discrete", "prey.mode=fixed", "prey.checkpoint=weak"], capsys)
    assert "plays continuous actions" in err and "env.actions=discrete" in err


def test_a_discrete_run_writes_a_discrete_prey_file_evaluates_and_plays_the_suite(tmp_path):
    common = ["--config", SMOKE, f"run.dir={tmp_path}", "run.progress=false", "env.actions=discrete"]
    train.main([*common, "run.name=learn"])
    run = tmp_path / "learn"
    assert torch.load(run / "prey.pt", weights_only=True)["actions"] == "discrete"
    assert (run / "episode.gif").is_file()
    train.main([*common, "run.name=fixed", "prey.mode=fixed", f"prey.checkpoint={run / 'prey.pt'}"])
    assert read_rows(tmp_path / "fixed")[-1]["env_steps"] == load_config(SMOKE).train.total_steps
    played = evaluated(
        [str(run), "--episodes", "4", "--gif", str(tmp_path / "eval.gif"), "--out", str(tmp_path / "e.json")]
    )
    assert played["prey"] == "learned" and (tmp_path / "eval.gif").is_file()
    suite = evaluated([str(run), "--suite", "--episodes", "4", "--out", str(tmp_path / "suite.json")])
    assert list(suite["suite"]) == ["still", "random", "flee", "weak_discrete", "strong_discrete"]
    for role in ("weak", "strong"):  # named as for any run: the discrete shipped prey play
        shipped = evaluated([str(run), "--prey", role, "--episodes", "4", "--out", str(tmp_path / "e.json")])
        assert shipped["prey"] == f"{role}_discrete"
        assert shipped["predator_return"] == suite["suite"][f"{role}_discrete"]["predators"]["predator_return"]
