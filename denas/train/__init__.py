"""Training of searched structures: DDP on CPU under torchrun, IPEX/bf16 when available.

`denas.train.command` is the CLI (`denas train`), `denas.train.loop.train` the Python API,
`denas.train.envvars` the PyTorchJob environment contract shared by both executors.
"""

from denas.train.envvars import torchrun_command, torchrun_env

__all__ = ["torchrun_command", "torchrun_env"]
