"""Networks: policies, value and Q functions, recurrent cores, and the diagonal-Gaussian math.

One module per kind (``core``: the Gaussian policies and the distribution math; ``actor_critic``;
``offpolicy``; ``features``: MAME's self-supervision network; ``recurrent``: the GRU, RL²'s policy and
TESP's encoder), every name re-exported here.

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

from metarl_jax.networks.actor_critic import VALUE_FUNCTIONS, ActorCritic, SharedActorCritic, make_actor_critic
from metarl_jax.networks.core import (
    ACTIVATIONS,
    MLP,
    DiagGaussian,
    GaussianMLPPolicy,
    LatentGaussianMLPPolicy,
    Policy,
    _check_mlp,
    float_dtype,
    hidden_layers,
    make_gaussian_policy,
    normc_initializer,
    output_layer,
    standard_normal_kl,
)
from metarl_jax.networks.features import FeatureMLP, FeatureRegressor, make_feature_regressor
from metarl_jax.networks.offpolicy import (
    DDPG_OUTPUT_UNIFORM,
    AdaptiveStdGaussianPolicy,
    DeterministicActor,
    Network,
    QFunction,
    TanhGaussian,
    TanhGaussianPolicy,
    make_adaptive_std_gaussian_policy,
    make_deterministic_actor,
    make_q_function,
    make_tanh_gaussian_policy,
)
from metarl_jax.networks.recurrent import (
    GRU,
    EpisodeEncoder,
    RecurrentPolicy,
    make_episode_encoder,
    make_gru,
    make_recurrent_policy,
)

__all__ = [
    'ACTIVATIONS', 'ActorCritic', 'AdaptiveStdGaussianPolicy', 'DDPG_OUTPUT_UNIFORM', 'DeterministicActor',
    'DiagGaussian', 'EpisodeEncoder', 'FeatureMLP', 'FeatureRegressor', 'GRU', 'GaussianMLPPolicy',
    'LatentGaussianMLPPolicy', 'MLP', 'Network', 'Policy', 'QFunction', 'RecurrentPolicy',
    'SharedActorCritic', 'TanhGaussian', 'TanhGaussianPolicy', 'VALUE_FUNCTIONS', '_check_mlp', 'float_dtype',
    'hidden_layers', 'make_actor_critic', 'make_adaptive_std_gaussian_policy', 'make_deterministic_actor',
    'make_episode_encoder', 'make_feature_regressor', 'make_gaussian_policy', 'make_gru', 'make_q_function',
    'make_recurrent_policy', 'make_tanh_gaussian_policy', 'normc_initializer', 'output_layer',
    'standard_normal_kl'
]
