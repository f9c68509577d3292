"""``block_push``: a planar pusher and 5 blocks (MAESN, Gupta et al. 2018, §5, ``pusher.py``).

Model (``assets/block_push.xml``): the hand and the blocks are pucks on x/y slide
joints; joint damping plays the table's friction, and the only contacts are
hand–block and block–block, so a block moves only when pushed. The hand starts
at the origin.

Task (a dict pytree): ``blocks`` (5, 2) initial block positions, ``relevant`` the
index of the block that must reach ``goal`` (2,). Blocks are placed in 5 distinct
cells of a 4 × 3 grid over x ∈ [−0.8, 0.8], y ∈ [0.25, 0.85] with jitter (centres
≥ 0.12 apart, so they never overlap); the goal lies 0.3–0.6 from the relevant block
in a uniform direction. Which block is relevant is not observed.

With b the relevant block and g the goal:

    dense  = −5‖b − g‖
    sparse = −5‖g‖ while ‖b − g‖ > 0.2, else −5‖b − g‖

Observation (16): hand xy, hand velocity, the 5 block xy positions, goal xy.
``info["position"]`` is the hand xy; ``info["block_position"]`` the relevant block.

Accuracy of the speed settings (Newton 2 iterations, 4 line-search iterations,
dt = 0.01, frame skip 5): over a 30-step scripted push the MJX positions of hand
and blocks stay within 2e-3 (measured ~1e-4) of MuJoCo's C engine with 100 solver iterations
(tests/test_envs_mjx.py::test_matches_c_engine).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax.envs.mjx_base import (
    MjxFamily,
    check_positive_float,
    mjx,  # imported there with its warp notice silenced
)

NUM_BLOCKS = 5
# numpy, not jnp: importing the package must not start a JAX backend (multi-host initialisation).
GRID_X = np.array([-0.6, -0.2, 0.2, 0.6], np.float32)
GRID_Y = np.array([0.35, 0.55, 0.75], np.float32)
JITTER = np.array([0.1, 0.04], np.float32)
GOAL_OFFSET = (0.3, 0.6)
DISTANCE_WEIGHT = 5.0


def _sample_task(key: jax.Array) -> dict:
    """One task: 5 blocks in distinct jittered grid cells, the relevant index, and its goal."""
    key_cells, key_jitter, key_relevant, key_radius, key_angle = jax.random.split(key, 5)
    cells = jax.random.permutation(key_cells, GRID_X.size * GRID_Y.size)[:NUM_BLOCKS]
    grid_x, grid_y = jnp.asarray(GRID_X), jnp.asarray(GRID_Y)
    centres = jnp.stack([grid_x[cells % GRID_X.size], grid_y[cells // GRID_X.size]], axis=-1)
    blocks = centres + JITTER * jax.random.uniform(key_jitter, (NUM_BLOCKS, 2), minval=-1.0, maxval=1.0)
    relevant = jax.random.randint(key_relevant, (), 0, NUM_BLOCKS)
    radius = jax.random.uniform(key_radius, (), minval=GOAL_OFFSET[0], maxval=GOAL_OFFSET[1])
    angle = jax.random.uniform(key_angle, (), minval=-jnp.pi, maxval=jnp.pi)
    goal = blocks[relevant] + radius * jnp.array([jnp.cos(angle), jnp.sin(angle)])
    return {"blocks": blocks, "relevant": relevant, "goal": goal}


@functools.partial(jax.jit, static_argnums=1)
def sample_block_tasks(key: jax.Array, num_tasks: int) -> dict:
    return jax.vmap(_sample_task)(jax.random.split(key, num_tasks))


class BlockPush(MjxFamily):
    name = "block_push"
    asset = "block_push.xml"
    default_frame_skip = 5
    observation_size = 4 + 2 * NUM_BLOCKS + 2

    def __init__(
        self,
        episode_length: int = 100,
        sparse_radius: float = 0.2,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self.sparse_radius = check_positive_float(sparse_radius, "sparse_radius", self.name)
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        if self.mj_model.nq != 2 + 2 * NUM_BLOCKS:
            raise ValueError(
                f"{self.name}: MJCF {self.xml_path!r} must have 2 hand and {2 * NUM_BLOCKS} block slide joints, "
                f"found nq={self.mj_model.nq}"
            )

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> dict:
        return sample_block_tasks(key, num_tasks)

    def goal_marker(self, task: dict) -> jax.Array:
        """The relevant block's goal on the table (videos)."""
        return jnp.append(task["goal"], 0.0)

    def _initial_qpos_qvel(self, key, task):
        del key
        qpos = jnp.concatenate([jnp.zeros(2), task["blocks"].reshape(-1)])
        return qpos, jnp.zeros((self.mj_model.nv,))

    @staticmethod
    def block_positions(data: mjx.Data) -> jax.Array:
        return data.qpos[2:].reshape(NUM_BLOCKS, 2)

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        return jnp.concatenate([data.qpos[:2], data.qvel[:2], data.qpos[2:], task["goal"]])

    def _rewards(self, data_before, data, action, task):
        del data_before, action
        hand = data.qpos[:2]
        block = self.block_positions(data)[task["relevant"]]
        goal = task["goal"]
        distance = jnp.linalg.norm(block - goal)
        dense = -DISTANCE_WEIGHT * distance
        sparse = jnp.where(distance > self.sparse_radius, -DISTANCE_WEIGHT * jnp.linalg.norm(goal), dense)
        info = {
            "position": hand,
            "block_position": block,
            "sparse_reward": sparse,
            "truncation": jnp.zeros(()),
        }
        metrics = {
            "x": hand[0],
            "y": hand[1],
            "goal_distance": distance,
            "hand_block_distance": jnp.linalg.norm(hand - block),
        }
        return dense, sparse, jnp.zeros(()), info, metrics
