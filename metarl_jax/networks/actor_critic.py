"""Actor-critic networks: a Gaussian policy and a learned state value V(s) (single-task PPO)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_jax.networks.core import (
    MLP,
    DiagGaussian,
    Policy,
    _check_mlp,
    float_dtype,
    hidden_layers,
    make_gaussian_policy,
    output_layer,
)

# ---- actor-critic: a Gaussian policy and a learned state value V(s) -------------------------------


class SharedActorCritic(nn.Module):
    """One torso h(s) with two heads: π(a | s) = N(W_μ h(s), diag(σ²)) and V(s) = w_vᵀ h(s)."""

    action_size: int
    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[DiagGaussian, jax.Array]:
        h = hidden_layers(obs, self.hidden_sizes, self.activation, layer_norm=False)
        mean = output_layer(h, self.action_size)
        value = output_layer(h, 1, scale=1.0)[..., 0]
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,),
                             float_dtype())
        return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape)), value


class ActorCritic(NamedTuple):
    """``policy`` (a ``Policy`` on the whole parameter pytree) and ``value(params, obs) -> V(s)`` [...]."""

    policy: Policy
    value: Callable[[chex.ArrayTree, jax.Array], jax.Array]


VALUE_FUNCTIONS = ("separate", "shared")


def make_actor_critic(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (64, 64),
                      activation: str = "tanh", init_log_std: float = 0.0,
                      value_hidden_sizes: Sequence[int] = (64, 64), kind: str = "separate") -> ActorCritic:
    """A Gaussian MLP policy and a state-value MLP, ``kind`` in ``VALUE_FUNCTIONS``.

    "separate": params ``{"policy": …, "value": …}``, two MLPs (PPO's MuJoCo setting, brax's PPO);
    "shared": one torso of ``hidden_sizes`` with a mean head and a value head (``value_hidden_sizes``
    unused). Either way ``policy.apply`` reads the whole pytree, so the gradient of a policy-only
    objective is zero on the value parameters.
    """
    _check_mlp(hidden_sizes, activation)
    if kind not in VALUE_FUNCTIONS:
        raise ValueError(f"make_actor_critic: kind must be one of {list(VALUE_FUNCTIONS)}, got {kind!r}")
    if kind == "shared":
        module = SharedActorCritic(action_size, tuple(hidden_sizes), activation, init_log_std)
        policy = Policy(init=lambda key: module.init(key, jnp.zeros((observation_size,))),
                        apply=lambda params, obs, latent=None: module.apply(params, obs)[0], latent_size=0)
        return ActorCritic(policy=policy, value=lambda params, obs: module.apply(params, obs)[1])
    _check_mlp(value_hidden_sizes, activation)
    actor = make_gaussian_policy(observation_size, action_size, hidden_sizes, activation, init_log_std)
    critic = MLP(tuple(value_hidden_sizes), 1, activation, output_scale=1.0)

    def init(key):
        policy_key, value_key = jax.random.split(key)
        return {"policy": actor.init(policy_key), "value": critic.init(value_key, jnp.zeros((observation_size,)))}

    policy = Policy(init=init, apply=lambda params, obs, latent=None: actor.apply(params["policy"], obs),
                    latent_size=0)
    return ActorCritic(policy=policy, value=lambda params, obs: critic.apply(params["value"], obs)[..., 0])
