"""Policies and the diagonal-Gaussian distribution math.

* ``GaussianMLPPolicy``: π(a | s) = N(μ_θ(s), diag(σ²)) with a state-independent,
  learned log σ (rllab / ProMP style).
* ``LatentGaussianMLPPolicy``: π(a | s, z) with input s ⧺ z, where z is drawn once
  per episode (MAESN, MAME).
* ``DiagGaussian``: log-prob, entropy, KL and sampling as small pure functions.

Off-policy learners (DDPG, SAC, Xu et al.'s teacher) build on:

* ``make_deterministic_actor``: a = tanh(MLP(s)) ∈ [−1, 1]^A (DDPG's μ(s; θ_π)).
* ``make_q_function``: Q(s, a), one head or a twin (SAC's clipped double Q); the action joins at
  the input or after the first hidden layer (OpenAI baselines' DDPG critic).
* ``TanhGaussian`` and ``make_tanh_gaussian_policy``: a = tanh(u), u ~ N(μ(s), σ(s)²), with the
  change-of-variables term log π(a|s) = log N(u) − Σ_d log(1 − tanh²u_d) (SAC, Haarnoja et al. 2018, app. C).
* ``make_adaptive_std_gaussian_policy``: N(μ(s), σ(s)²) with separate mean and log-std MLPs
  (Xu et al.'s independent teacher, Sec. 5.1).

Every MLP takes ``layer_norm``: Dense → LayerNorm → activation (OpenAI baselines' DDPG).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "swish": nn.swish,  # x·σ(x): brax's default for PPO and SAC
}

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def float_dtype() -> jnp.dtype:
    """The parameter dtype: float32, or float64 when ``jax_enable_x64`` is set.

    Every network and learned constant is created in this dtype, so a whole run (rollouts,
    estimators, TRPO's conjugate gradient) is float64 under ``JAX_ENABLE_X64=1``: the
    equivalence tests use that to compare programs at 1e-16 rounding (``tests/equivalence.py``).
    """
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class DiagGaussian(NamedTuple):
    """A diagonal Gaussian over the last axis; ``mean`` and ``log_std`` broadcast."""

    mean: jax.Array
    log_std: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        # log N(x; μ, σ²) = −½ Σ_d [((x − μ)/σ)² + 2 log σ + log 2π]
        z = (x - self.mean) * jnp.exp(-self.log_std)
        return -0.5 * jnp.sum(z**2 + 2.0 * self.log_std + _LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        # H = Σ_d (log σ + ½ log 2πe)
        log_std = jnp.broadcast_to(self.log_std, self.mean.shape)
        return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)

    def kl(self, other: DiagGaussian) -> jax.Array:
        """KL(self ‖ other) = Σ_d [log σ₂/σ₁ + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½]."""
        var_ratio = jnp.exp(2.0 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        return jnp.sum(other.log_std - self.log_std + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        noise = jax.random.normal(key, jnp.broadcast_shapes(self.mean.shape, self.log_std.shape))
        return self.mean + jnp.exp(self.log_std) * noise


def standard_normal_kl(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the last axis (MAESN's latent prior term)."""
    return DiagGaussian(mean, log_std).kl(DiagGaussian(jnp.zeros_like(mean), jnp.zeros_like(log_std)))


class MLP(nn.Module):
    """Dense layers with ``activation``; ``layer_norm`` puts a LayerNorm before each activation.

    The last layer is small: variance scaling ``output_scale`` (rllab's init), or, with
    ``output_uniform``, U(−output_uniform, output_uniform) (DDPG's 3e-3, Lillicrap et al. 2016, Sec. 7).
    """

    hidden_sizes: Sequence[int]
    output_size: int
    activation: str = "tanh"
    output_scale: float = 0.01
    layer_norm: bool = False
    output_uniform: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = hidden_layers(x, self.hidden_sizes, self.activation, self.layer_norm)
        return output_layer(x, self.output_size, self.output_scale, self.output_uniform)


def hidden_layers(x: jax.Array, widths: Sequence[int], activation: str, layer_norm: bool) -> jax.Array:
    """Dense → (LayerNorm) → activation for each width (call inside a compact module)."""
    act = ACTIVATIONS[activation]
    for width in widths:
        x = nn.Dense(width, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x)
        if layer_norm:
            x = nn.LayerNorm(param_dtype=float_dtype())(x)
        x = act(x)
    return x


def output_layer(x: jax.Array, size: int, scale: float = 0.01, uniform: float | None = None) -> jax.Array:
    """The last Dense layer, initialised small (call inside a compact module)."""
    if uniform is not None:
        kernel_init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -uniform, uniform)  # noqa: E731
    else:  # A small last layer keeps the initial policy mean near zero (rllab's init).
        kernel_init = nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")
    return nn.Dense(size, kernel_init=kernel_init, param_dtype=float_dtype())(x)


class GaussianMLPPolicy(nn.Module):
    """π(a | s) = N(MLP(s), diag(exp(2 log σ))), log σ a learned vector."""

    action_size: int
    hidden_sizes: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> DiagGaussian:
        mean = MLP(self.hidden_sizes, self.action_size, self.activation)(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,),
                             float_dtype())
        return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape))


class LatentGaussianMLPPolicy(nn.Module):
    """π(a | s, z): the Gaussian MLP policy on the input s ⧺ z (MAESN eq. 2)."""

    action_size: int
    latent_size: int
    hidden_sizes: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array, latent: jax.Array) -> DiagGaussian:
        chex.assert_shape(latent, (*obs.shape[:-1], self.latent_size))
        return GaussianMLPPolicy(
            self.action_size, self.hidden_sizes, self.activation, self.init_log_std, name="policy"
        )(jnp.concatenate([obs, latent], axis=-1))


class Policy(NamedTuple):
    """A stochastic policy as two pure functions (optax style).

    ``init(key) -> params`` and ``apply(params, obs, latent) -> DiagGaussian``;
    ``latent`` is a per-episode vector of size ``latent_size`` (empty when 0).
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    apply: Callable[[chex.ArrayTree, jax.Array, jax.Array], DiagGaussian]
    latent_size: int


def make_gaussian_policy(
    observation_size: int,
    action_size: int,
    hidden_sizes: Sequence[int] = (100, 100),
    activation: str = "relu",
    init_log_std: float = 0.0,
    latent_size: int = 0,
) -> Policy:
    """Builds a (latent-conditioned when ``latent_size`` > 0) Gaussian MLP policy."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if latent_size:
        module = LatentGaussianMLPPolicy(action_size, latent_size, tuple(hidden_sizes), activation, init_log_std)

        def init(key):
            return module.init(key, jnp.zeros((observation_size,)), jnp.zeros((latent_size,)))

        def apply(params, obs, latent):
            return module.apply(params, obs, latent)
    else:
        module = GaussianMLPPolicy(action_size, tuple(hidden_sizes), activation, init_log_std)

        def init(key):
            return module.init(key, jnp.zeros((observation_size,)))

        def apply(params, obs, latent=None):
            del latent
            return module.apply(params, obs)

    return Policy(init=init, apply=apply, latent_size=latent_size)


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


# ---- off-policy learners: deterministic actors, Q-functions, squashed Gaussians ----------------


class Network(NamedTuple):
    """A network as two pure functions: ``init(key) -> params`` and ``apply(params, *inputs)``."""

    init: Callable[[jax.Array], chex.ArrayTree]
    apply: Callable[..., chex.ArrayTree]


# DDPG's last-layer init, U(−3e-3, 3e-3) (Lillicrap et al. 2016, Sec. 7).
DDPG_OUTPUT_UNIFORM = 3e-3


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)) ∈ [−1, 1]^A; learners rescale to the family's action bounds."""

    action_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden_sizes, self.action_size, self.activation, layer_norm=self.layer_norm,
                            output_uniform=DDPG_OUTPUT_UNIFORM)(obs))


class QFunction(nn.Module):
    """Q(s, a) with ``num_critics`` independent heads, output [..., num_critics].

    ``action_layer`` is the hidden layer whose input the action joins: 0 concatenates it to
    s (SAC, brax), 1 after the first hidden layer (OpenAI baselines' DDPG critic).
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False
    num_critics: int = 1
    action_layer: int = 0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        chex.assert_equal_shape_prefix((obs, action), obs.ndim - 1)
        heads = []
        for _ in range(self.num_critics):
            x = hidden_layers(obs, self.hidden_sizes[:self.action_layer], self.activation, self.layer_norm)
            x = jnp.concatenate([x, action], axis=-1)
            x = hidden_layers(x, self.hidden_sizes[self.action_layer:], self.activation, self.layer_norm)
            heads.append(output_layer(x, 1, uniform=DDPG_OUTPUT_UNIFORM)[..., 0])
        return jnp.stack(heads, axis=-1)


def _check_mlp(hidden_sizes: Sequence[int], activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not hidden_sizes or any(int(w) <= 0 for w in hidden_sizes):
        raise ValueError(f"hidden_sizes must be a non-empty tuple of positive ints, got {tuple(hidden_sizes)!r}")


def make_deterministic_actor(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (64, 64),
                             activation: str = "relu", layer_norm: bool = False) -> Network:
    """``apply(params, obs) -> action`` in [−1, 1]^A."""
    _check_mlp(hidden_sizes, activation)
    module = DeterministicActor(action_size, tuple(hidden_sizes), activation, layer_norm)
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), float_dtype())),
                   apply=module.apply)


def make_q_function(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (64, 64),
                    activation: str = "relu", layer_norm: bool = False, num_critics: int = 1,
                    action_layer: int = 0) -> Network:
    """``apply(params, obs, action) -> [..., num_critics]``."""
    _check_mlp(hidden_sizes, activation)
    if not 0 <= action_layer < len(hidden_sizes):
        raise ValueError(f"action_layer must be in [0, {len(hidden_sizes) - 1}] (a hidden layer), got {action_layer}")
    module = QFunction(tuple(hidden_sizes), activation, layer_norm, num_critics, action_layer)
    dtype = float_dtype()
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), dtype),
                                                jnp.zeros((action_size,), dtype)),
                   apply=module.apply)


class TanhGaussian(NamedTuple):
    """a = tanh(u), u ~ N(mean, exp(log_std)²) per dimension (actions in (−1, 1)^A).

    Change of variables: log π(a) = log N(u; μ, σ²) − Σ_d log(1 − tanh²(u_d)), with the
    stable form log(1 − tanh²u) = 2 (log 2 − u − softplus(−2u)).
    """

    mean: jax.Array
    log_std: jax.Array

    @property
    def pre_tanh(self) -> DiagGaussian:
        return DiagGaussian(self.mean, self.log_std)

    def sample_with_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, log π(a)) by the reparametrisation a = tanh(μ + σ ε): differentiable in (μ, σ)."""
        pre_tanh = self.pre_tanh.sample(key)
        return jnp.tanh(pre_tanh), self.log_prob_pre_tanh(pre_tanh)

    def log_prob_pre_tanh(self, pre_tanh: jax.Array) -> jax.Array:
        log_det = 2.0 * (_LOG_2 - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
        return self.pre_tanh.log_prob(pre_tanh) - jnp.sum(log_det, axis=-1)

    def log_prob(self, action: jax.Array, eps: float = 1e-6) -> jax.Array:
        """log π(a) of an action in (−1, 1)^A (clipped to 1 − eps before arctanh)."""
        return self.log_prob_pre_tanh(jnp.arctanh(jnp.clip(action, -1.0 + eps, 1.0 - eps)))

    def mode(self) -> jax.Array:
        """tanh(μ): the deterministic action used for evaluation."""
        return jnp.tanh(self.mean)


class TanhGaussianPolicy(nn.Module):
    """SAC's actor: an MLP outputs (μ, ρ) and σ = softplus(ρ) + min_std (brax's SAC parametrisation)."""

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    min_std: float = 1e-3

    @nn.compact
    def __call__(self, obs: jax.Array) -> TanhGaussian:
        x = hidden_layers(obs, self.hidden_sizes, self.activation, self.layer_norm)
        out = nn.Dense(2 * self.action_size, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x)
        mean, raw_std = jnp.split(out, 2, axis=-1)
        return TanhGaussian(mean, jnp.log(jax.nn.softplus(raw_std) + self.min_std))


def make_tanh_gaussian_policy(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (256, 256),
                              activation: str = "relu", layer_norm: bool = False, min_std: float = 1e-3) -> Network:
    """``apply(params, obs) -> TanhGaussian``."""
    _check_mlp(hidden_sizes, activation)
    module = TanhGaussianPolicy(action_size, tuple(hidden_sizes), activation, layer_norm, min_std)
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), float_dtype())),
                   apply=module.apply)


class AdaptiveStdGaussianPolicy(nn.Module):
    """N(μ(s), σ(s)²) with separate mean and log-std MLPs (rllab's adaptive_std; Xu et al.'s teacher (ii)).

    Both outputs start near their initial values: μ ≈ 0 and log σ ≈ ``init_log_std``.
    """

    action_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> DiagGaussian:
        mean = MLP(self.hidden_sizes, self.action_size, self.activation, layer_norm=self.layer_norm, name="mean")(obs)
        log_std = MLP(self.hidden_sizes, self.action_size, self.activation, layer_norm=self.layer_norm,
                      name="log_std")(obs)
        return DiagGaussian(mean, log_std + self.init_log_std)


def make_adaptive_std_gaussian_policy(observation_size: int, action_size: int,
                                      hidden_sizes: Sequence[int] = (64, 64), activation: str = "relu",
                                      layer_norm: bool = False, init_log_std: float = 0.0) -> Network:
    """``apply(params, obs) -> DiagGaussian``."""
    _check_mlp(hidden_sizes, activation)
    module = AdaptiveStdGaussianPolicy(action_size, tuple(hidden_sizes), activation, layer_norm, init_log_std)
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), float_dtype())),
                   apply=module.apply)


# ---- MAME: the self-supervision network M_{β,z}(s, a) = w_βᵀ m_β(s, a) -----------------------------


class FeatureMLP(nn.Module):
    """h(x): an MLP whose every layer (the last included) is activated: the features m_β sums."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x))
        return x


class FeatureRegressor(NamedTuple):
    """A regression network split at its last hidden layer (optax style pure functions).

    ``init(key) -> params``; ``features(params, x) -> h`` ([..., hidden_sizes[-1]]);
    ``head(params, m) -> w m + b`` ([..., output_size]). MAME sums ``features`` over a window of
    time steps (a truncated successor representation) before applying the linear ``head``.
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    features: Callable[[chex.ArrayTree, jax.Array], jax.Array]
    head: Callable[[chex.ArrayTree, jax.Array], jax.Array]


def make_feature_regressor(input_size: int, output_size: int, hidden_sizes: Sequence[int] = (64, 64),
                           activation: str = "tanh") -> FeatureRegressor:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not hidden_sizes:
        raise ValueError("make_feature_regressor: hidden_sizes must name at least one layer (the features)")
    body = FeatureMLP(tuple(hidden_sizes), activation)
    head = nn.Dense(output_size, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())

    def init(key):
        body_key, head_key = jax.random.split(key)
        return {"features": body.init(body_key, jnp.zeros((input_size,))),
                "head": head.init(head_key, jnp.zeros((hidden_sizes[-1],)))}

    return FeatureRegressor(init=init, features=lambda params, x: body.apply(params["features"], x),
                            head=lambda params, m: head.apply(params["head"], m))


# ============================================================================ recurrent networks
# One GRU (flax's ``GRUCell``) runs RL²'s recurrent policy and TESP's episode encoder.


def normc_initializer(scale: float) -> Callable[..., jax.Array]:
    """Columns of unit norm times ``scale``: w = scale · n / ‖n‖ per output unit, n ~ N(0, I) (rllib/baselines)."""

    def init(key, shape, dtype=None):
        noise = jax.random.normal(key, shape, float_dtype() if dtype is None else dtype)
        return scale * noise / jnp.sqrt(jnp.sum(noise**2, axis=0, keepdims=True))

    return init


class GRU(NamedTuple):
    """A GRU layer as pure functions over its parameters (optax style).

    ``step(params, h, x, m)``: h' = GRUCell(h, x) where m = 1, h' = h where m = 0 (a step after the
    episode ended leaves the state untouched). ``unroll(params, h_0, xs [T, in], mask [T])`` scans
    ``step`` over time with ``lax.scan`` and returns (h_T, [h_1 .. h_T]); the same function therefore
    runs a rollout step by step and re-scores the stored inputs afterwards.
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    step: Callable[..., jax.Array]
    unroll: Callable[..., tuple[jax.Array, jax.Array]]
    input_size: int
    hidden_size: int

    def initial_state(self) -> jax.Array:
        """h_0 = 0, the state at the start of a trial (RL²) or an episode (TESP's encoder)."""
        return jnp.zeros((self.hidden_size,), float_dtype())


def make_gru(input_size: int, hidden_size: int) -> GRU:
    """flax's ``GRUCell`` with ``hidden_size`` units on inputs of size ``input_size``."""

    def cell() -> nn.GRUCell:  # built when used, so that its parameters follow jax_enable_x64
        return nn.GRUCell(features=hidden_size, param_dtype=float_dtype())

    def init(key):
        return cell().init(key, jnp.zeros((hidden_size,), float_dtype()), jnp.zeros((input_size,), float_dtype()))

    def step(params, h, x, m=1.0):
        chex.assert_shape([h, x], [(hidden_size,), (input_size,)])
        new_h, _ = cell().apply(params, h, x)
        return jnp.where(m > 0, new_h, h)

    def unroll(params, h0, inputs, mask=None):
        chex.assert_shape(inputs, (None, input_size))
        mask = jnp.ones(inputs.shape[:1], inputs.dtype) if mask is None else mask

        def body(h, x_and_m):
            h = step(params, h, *x_and_m)
            return h, h

        return jax.lax.scan(body, h0, (inputs, mask))

    return GRU(init=init, step=step, unroll=unroll, input_size=input_size, hidden_size=hidden_size)


class RecurrentPolicy(NamedTuple):
    """π(a_t | x_1..x_t) = N(W h_t + b, diag σ²), h_t = GRU(h_{t−1}, x_t), log σ learned (RL², garage's
    ``GaussianGRUPolicy``).

    ``step(params, h, x, m) -> (h', dist)`` is one time step of a rollout; ``unroll(params, xs [T, in],
    mask [T]) -> dist [T]`` re-runs the GRU from h_0 over stored inputs (``lax.scan`` of ``step``).
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    step: Callable[..., tuple[jax.Array, DiagGaussian]]
    unroll: Callable[..., DiagGaussian]
    gru: GRU
    action_size: int

    @property
    def input_size(self) -> int:
        return self.gru.input_size

    def initial_state(self) -> jax.Array:
        return self.gru.initial_state()


def make_recurrent_policy(input_size: int, action_size: int, hidden_size: int = 64,
                          init_log_std: float = 0.0) -> RecurrentPolicy:
    """A GRU of ``hidden_size`` units and a Gaussian output layer on its state."""
    gru = make_gru(input_size, hidden_size)
    head = GaussianMLPPolicy(action_size, hidden_sizes=(), init_log_std=init_log_std)

    def init(key):
        gru_key, head_key = jax.random.split(key)
        return {"gru": gru.init(gru_key), "head": head.init(head_key, jnp.zeros((hidden_size,), float_dtype()))}

    def step(params, h, x, m=1.0):
        h = gru.step(params["gru"], h, x, m)
        return h, head.apply(params["head"], h)

    def unroll(params, inputs, mask=None):
        _, states = gru.unroll(params["gru"], gru.initial_state(), inputs, mask)
        return head.apply(params["head"], states)

    return RecurrentPolicy(init=init, step=step, unroll=unroll, gru=gru, action_size=action_size)


class EpisodeEncoder(NamedTuple):
    """g(τ) = W h_T(τ) + b: a GRU over an episode's steps, its final state projected to d dimensions
    (TESP's task encoder, Fig. 2; the projection starts small: normc(0.01) columns, as in llan-ml/tesp).

    ``encode(params, inputs [T, in], mask [T]) -> [d]``; h_T is the state after the last valid step.
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    encode: Callable[..., jax.Array]
    gru: GRU
    embedding_size: int


def make_episode_encoder(input_size: int, hidden_size: int, embedding_size: int,
                         projection_scale: float = 0.01) -> EpisodeEncoder:
    gru = make_gru(input_size, hidden_size)

    def projection() -> nn.Dense:
        return nn.Dense(embedding_size, kernel_init=normc_initializer(projection_scale), param_dtype=float_dtype())

    def init(key):
        gru_key, projection_key = jax.random.split(key)
        return {"gru": gru.init(gru_key),
                "projection": projection().init(projection_key, jnp.zeros((hidden_size,), float_dtype()))}

    def encode(params, inputs, mask):
        final_state, _ = gru.unroll(params["gru"], gru.initial_state(), inputs, mask)
        return projection().apply(params["projection"], final_state)

    return EpisodeEncoder(init=init, encode=encode, gru=gru, embedding_size=embedding_size)
