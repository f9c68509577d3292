"""Devices: a 1-D mesh over the task axis, and multi-host initialisation.

Tasks of a meta-batch are independent until the outer objective averages them,
so the task axis is the natural data-parallel axis. ``jax.jit`` with sharding
constraints (GSPMD) partitions the vmapped rollouts and inner updates over the
mesh, and inserts the all-reduce for the outer gradient; no ``pmap`` is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

TASK_AXIS = "tasks"


def task_mesh(devices: Sequence[jax.Device] | None = None, num_devices: int | None = None) -> Mesh:
    """A mesh with one axis, ``"tasks"``, over ``devices`` (default: all devices)."""
    if devices is None:
        devices = jax.devices()
        if num_devices is not None:
            if not 1 <= num_devices <= len(devices):
                raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
            devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (TASK_AXIS,))


def check_divisible(num_tasks: int, mesh: Mesh, field: str) -> None:
    n = mesh.devices.size
    if num_tasks % n:
        raise ValueError(f"config field {field!r} = {num_tasks} must be divisible by the number of "
                         f"devices in the task mesh ({n})")


def shard_tasks(tree: Any, mesh: Mesh | None) -> Any:
    """Constrains every leaf's leading (task) axis to be split over the mesh."""
    if mesh is None or mesh.devices.size == 1:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec(TASK_AXIS))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Places ``tree`` replicated on every device of the mesh (host -> device once)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def commit(tree: Any, mesh: Mesh | None) -> Any:
    """Places every leaf of ``tree`` that is not already laid out on ``mesh`` replicated on it.

    ``jax.jit`` keys its cache on the arguments' shardings and on whether they are committed: an eager
    ``init`` returns uncommitted or single-device arrays, a compiled step returns arrays laid out on
    the mesh, so without this the second call of a train step compiled the program again (measured
    for the off-policy learners). Leaves already on the mesh (e.g. MAESN's task-sharded latent
    tables) are kept as they are.
    """
    if mesh is None:
        return tree
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(x):
        if isinstance(x, jax.core.Tracer):  # under a trace (jit, eval_shape) placement is the caller's
            return x
        on_mesh = (isinstance(x, jax.Array) and x.committed and isinstance(x.sharding, NamedSharding)
                   and x.sharding.mesh == mesh)
        return x if on_mesh else jax.device_put(x, replicated)

    return jax.tree.map(place, tree)


def to_host(tree: Any) -> Any:
    """Arrays as numpy on this host, gathering shards that live on other processes (multi-host)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Multi-host entry point: ``jax.distributed.initialize`` from arguments or the environment.

    Reads ``METARL_COORDINATOR``, ``METARL_NUM_PROCESSES`` and ``METARL_PROCESS_ID`` when the
    arguments are not given. Returns False (and does nothing) for a single process, so a
    launcher can call it unconditionally.
    """
    coordinator_address = coordinator_address or os.environ.get("METARL_COORDINATOR")
    if num_processes is None and "METARL_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["METARL_NUM_PROCESSES"])
    if process_id is None and "METARL_PROCESS_ID" in os.environ:
        process_id = int(os.environ["METARL_PROCESS_ID"])
    if not coordinator_address or (num_processes or 1) <= 1:
        return False
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    return True
