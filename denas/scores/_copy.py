"""`deep_copy(module)`: ``copy.deepcopy`` of an ``nn.Module``, without its generic machinery where
the result is certainly the same.

``copy.deepcopy`` reconstructs every module through ``__reduce_ex__`` and deep-copies each of
the ~20 entries of its ``__dict__`` (a dozen of them empty hook dictionaries) one generic call at
a time: for a small CNN (80 modules, 30k parameters) that costs as much as a forward+backward
pass, and a scoring call makes one such copy. Here a module whose class keeps ``nn.Module``'s
pickling protocol is rebuilt directly (``cls.__new__`` + ``__setstate__`` of its copied state,
what ``deepcopy`` does), immutable attributes and empty containers are taken without the
generic walk, and a plain dense CPU buffer that owns its whole storage is cloned. Everything
else (other attribute values, parameters, unusual tensors, modules with their own copy or pickle
protocol) goes through ``copy.deepcopy`` with the same memo, so shared and tied objects stay
shared exactly as ``copy.deepcopy`` would keep them.
"""

from __future__ import annotations

import copy
import copyreg
import types
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

_ATOMIC = frozenset(
    {
        type(None),
        int,
        float,
        bool,
        complex,
        str,
        bytes,
        type,
        range,
        types.FunctionType,
        types.BuiltinFunctionType,
        torch.dtype,
        torch.device,
        torch.layout,
        torch.memory_format,
    }
)
_EMPTY_OK = (dict, OrderedDict, set)
_plain_classes: dict[type, bool] = {}


def _plain_class(cls: type) -> bool:
    """Whether ``copy.deepcopy`` rebuilds instances as ``cls.__new__(cls)``, then
    ``__setstate__(deepcopy(state))`` with ``nn.Module.__getstate__``'s state (a dict)."""
    plain = _plain_classes.get(cls)
    if plain is None:
        plain = (
            cls.__getstate__ is nn.Module.__getstate__
            and cls.__reduce_ex__ is object.__reduce_ex__
            and cls.__reduce__ is object.__reduce__
            and getattr(cls, "__deepcopy__", None) is None
            and getattr(cls, "__getnewargs_ex__", None) is None
            and getattr(cls, "__getnewargs__", None) is None
            and cls not in copyreg.dispatch_table
            and not issubclass(cls, (list, dict))  # their items would travel outside the state
        )
        _plain_classes[cls] = plain
    return plain


def _atomic(value: Any) -> bool:
    """Values ``copy.deepcopy`` returns as they are (tuples of such values included)."""
    kind = type(value)
    if kind in _ATOMIC:
        return True
    if kind is tuple or kind is frozenset or kind is torch.Size:
        return all(_atomic(v) for v in value)
    return False


def _copy_tensor(t: torch.Tensor, memo: dict[Any, Any]) -> torch.Tensor:
    """``copy.deepcopy(t, memo)``; a plain dense CPU tensor that owns its whole storage (a usual
    buffer) is cloned, which builds the same storage ``Tensor.__deepcopy__`` would."""
    done = memo.get(id(t))
    if done is not None:
        return done
    storages = memo.setdefault("torch", {})  # where UntypedStorage.__deepcopy__ keeps its copies
    if (
        type(t) is torch.Tensor
        and t.device.type == "cpu"
        and t.layout == torch.strided
        and t.is_leaf
        and not t.requires_grad
        and t.grad is None
        and not (t.is_quantized or t.is_conj() or t.is_neg())
        and t.storage_offset() == 0
        and t.is_contiguous()
        and not t.__dict__
    ):
        storage = t.untyped_storage()
        if storage._cdata not in storages and storage.nbytes() == t.numel() * t.element_size():
            with torch.no_grad():
                new = t.clone(memory_format=torch.contiguous_format)
            storages[storage._cdata] = new.untyped_storage()
            memo[id(t)] = new
            return new
    return copy.deepcopy(t, memo)


def _copy_module(module: nn.Module, memo: dict[Any, Any]) -> nn.Module:
    done = memo.get(id(module))
    if done is not None:
        return done
    cls = type(module)
    if not _plain_class(cls):
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    state: dict[str, Any] = {}
    for key, value in module.__getstate__().items():
        done = memo.get(id(value))
        if done is not None:
            state[key] = done
        elif key == "_modules" and type(value) is dict:
            state[key] = memo[id(value)] = {
                name: None if m is None else _copy_module(m, memo) for name, m in value.items()
            }
        elif key in ("_parameters", "_buffers") and type(value) is dict:
            state[key] = memo[id(value)] = {
                name: None if t is None else _copy_tensor(t, memo) for name, t in value.items()
            }
        elif _atomic(value):
            state[key] = value
        elif type(value) in _EMPTY_OK and not value:
            state[key] = memo[id(value)] = type(value)()
        else:
            state[key] = copy.deepcopy(value, memo)
    new.__setstate__(state)
    return new


def deep_copy(module: nn.Module) -> nn.Module:
    """The same module ``copy.deepcopy(module)`` returns (values, sharing, hooks, modes)."""
    return _copy_module(module, {})
