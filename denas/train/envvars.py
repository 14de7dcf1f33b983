"""The PyTorchJob environment contract of a training group, built in one place.

The operator (pods) and the local executor (processes) both call these pure functions, so a
training process sees the same variables whichever executor started it. The names follow
Kubeflow's PyTorchJob: ``MASTER_*``/``WORLD_SIZE``/``RANK`` describe the *node* group as the
pod sees it, ``PET_*`` are what torchrun reads to start ``nproc_per_node`` processes per node.
"""

from __future__ import annotations

import sys

#: seconds torchrun's static rendezvous and ``init_process_group`` wait for the master
DEFAULT_RENDEZVOUS_TIMEOUT = 300


def master_address(job_name: str, service: str | None = None, namespace: str | None = None) -> str:
    """DNS name of the master pod behind the group's headless Service (``<job>-train``)."""
    service = service or f"{job_name}-train"
    host = f"{job_name}-train-master-0.{service}"
    return f"{host}.{namespace}.svc" if namespace else host


def torchrun_env(
    job_name: str,
    service: str | None,
    node_rank: int,
    nnodes: int,
    nproc_per_node: int,
    port: int = 23456,
    *,
    master_addr: str | None = None,
) -> dict[str, str]:
    """Environment of node ``node_rank`` (0 = master) of an ``nnodes``-node training group.

    ``master_addr`` overrides the Service DNS name (the local executor passes ``127.0.0.1``).
    """
    if nnodes < 1:
        raise ValueError(f"nnodes must be >= 1, got {nnodes}")
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank must be in [0, {nnodes - 1}], got {node_rank}")
    addr = master_addr or master_address(job_name, service)
    return {
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
        # PyTorchJob semantics: WORLD_SIZE/RANK count nodes (pods); torchrun rewrites them per process.
        "WORLD_SIZE": str(nnodes),
        "RANK": str(node_rank),
        "PET_NNODES": str(nnodes),
        "PET_NPROC_PER_NODE": str(nproc_per_node),
        "PET_NODE_RANK": str(node_rank),
        "PET_MASTER_ADDR": addr,
        "PET_MASTER_PORT": str(port),
    }


def torchrun_command(
    job_name: str,
    service: str | None,
    node_rank: int,
    nnodes: int,
    nproc_per_node: int,
    port: int = 23456,
    *,
    master_addr: str | None = None,
    train_args: list[str] | None = None,
    python: str | None = None,
    rendezvous_timeout: int = DEFAULT_RENDEZVOUS_TIMEOUT,
    entrypoint: list[str] | None = None,
) -> list[str]:
    """``python -m torch.distributed.run ... -m denas train <train_args>`` for one node.

    The flags repeat the environment so the command is self-describing in ``kubectl describe``;
    ``--rdzv-conf timeout`` makes a worker whose master never comes up fail instead of hanging.
    ``entrypoint`` replaces ``-m denas train`` (e.g. ``["-m", "denas.train"]``).
    """
    env = torchrun_env(job_name, service, node_rank, nnodes, nproc_per_node, port, master_addr=master_addr)
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={env['PET_NNODES']}",
        f"--nproc-per-node={env['PET_NPROC_PER_NODE']}",
        f"--node-rank={env['PET_NODE_RANK']}",
        f"--master-addr={env['PET_MASTER_ADDR']}",
        f"--master-port={env['PET_MASTER_PORT']}",
        f"--rdzv-conf=timeout={int(rendezvous_timeout)}",
        *(entrypoint or ["-m", "denas", "train"]),
        *(train_args or []),
    ]
