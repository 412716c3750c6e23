"""A model's structure beyond its weights, so a resized model (structured pruning removed channels)
rebuilds from its registry architecture without pickling any code.

``module_structure`` records each module's plain settings (``in_channels``, ``groups``,
``num_heads``...); ``restore_structure`` writes them back into a freshly built model and gives every
parameter and buffer the saved shape, then loads the weights. Everything stored is plain ints,
floats, strings and tensors, so ``torch.load(..., weights_only=True)`` reads it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> small = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2))
    >>> structure, state = module_structure(small), small.state_dict()
    >>> big = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 36, 2))
    >>> back = restore_structure(big, structure, state)
    >>> back[0].out_channels, torch.equal(back(torch.ones(1, 1, 8, 8)), small(torch.ones(1, 1, 8, 8)))
    (4, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

_PLAIN = (int, float, bool, str, type(None))


def module_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module name, its public settings that are plain values (or tuples/lists of them)."""
    out = {}
    for name, module in model.named_modules():
        attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training" and _plain(v)}
        if attrs:
            out[name] = attrs
    return out


def restore_structure(
    model: nn.Module, structure: Mapping[str, Mapping[str, Any]], state_dict: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Make ``model`` (built at its registry size) take the saved settings and tensor shapes, then
    load ``state_dict`` into it; returns the model."""
    modules = dict(model.named_modules())
    for name, attrs in structure.items():
        if name in modules:
            for key, value in attrs.items():
                setattr(modules[name], key, tuple(value) if isinstance(value, list) else value)
    for key, saved in state_dict.items():
        owner_name, _, attr = key.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None or not isinstance(saved, torch.Tensor):
            continue
        blank = torch.empty(saved.shape, dtype=torch.float32 if saved.is_quantized else saved.dtype)
        if (
            attr in owner._parameters
            and owner._parameters[attr] is not None
            and owner._parameters[attr].shape != saved.shape
        ):
            owner._parameters[attr] = nn.Parameter(blank, requires_grad=owner._parameters[attr].requires_grad)
        elif attr in owner._buffers and owner._buffers[attr] is not None and owner._buffers[attr].shape != saved.shape:
            owner._buffers[attr] = blank
    tied = _tied_groups(model)
    # assign=True keeps the saved tensors as they are (torchao's quantized weights stay quantized).
    model.load_state_dict(state_dict, assign=True)
    for first, *others in tied:
        # assign=True gives each name its own Parameter; a tied pair (a GPT's head and embedding) would then get
        # two gradients and two optimizer updates. Tie again where the file saved one tensor under both names.
        if all(_same_tensor(state_dict.get(first), state_dict.get(name)) for name in others):
            for name in others:
                owner, _, attr = name.rpartition(".")
                setattr(model.get_submodule(owner), attr, model.get_parameter(first))
    return model


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Names of parameters that are one Parameter under several names, a group each."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def _same_tensor(a: Any, b: Any) -> bool:
    try:
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        )
    except (RuntimeError, NotImplementedError):  # tensor subclasses (torchao's) without a plain storage
        return False


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)
