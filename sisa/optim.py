"""torch's Adam and SGD, minus the `torch._dynamo` import that their wrappers pay (about 1 s a process).

`torch.optim.Optimizer` decorates `add_param_group` (called by the constructor), `zero_grad`,
`state_dict` and `load_state_dict` with `torch._disable_dynamo`, and each optimizer's `step` with
`_use_grad_for_differentiable`; both import `torch._dynamo` on their first call. That import
costs about as much CPU as `import torch` itself, and a one-subject `forget run` pays it for one
shard's retraining. In eager mode the wrappers do nothing to the numbers: the dynamo one only
keeps a compiler from tracing the method, the step one turns autograd off (on unless the
optimizer is `differentiable`) and marks graph breaks.

The classes here are torch's own optimizers with those wrappers peeled off (`inspect.unwrap`
follows the `__wrapped__` chain that `functools.wraps` leaves): the same constructor, `_init_group`,
update kernels (the single-tensor loop on the CPU, `foreach` on CUDA, chosen by torch as before),
`__setstate__` and state-dict layout. A checkpoint written with `torch.optim.Adam` loads into
`EagerAdam` and the reverse, and training gives the same bits (tests/sisa/test_optim.py checks
both over many steps, through state-dict round trips, and that no `torch._dynamo` is imported).
Nothing here is compiled, so nothing needs dynamo's protection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import SGD, Adam, Optimizer

_add_param_group = inspect.unwrap(Optimizer.add_param_group)
_zero_grad = inspect.unwrap(Optimizer.zero_grad)
_state_dict = inspect.unwrap(Optimizer.state_dict)
_load_state_dict = inspect.unwrap(Optimizer.load_state_dict)
# Unwrapped now, before any instance exists: the first instance of a class replaces its `step`
# with a profiling wrapper (Optimizer._patch_step_function), which `unwrap` also sees through.
_adam_step: Callable[..., Any] = inspect.unwrap(Adam.step)
_sgd_step: Callable[..., Any] = inspect.unwrap(SGD.step)


def _stepped(optimizer: Optimizer, raw_step: Callable[..., Any], closure: Callable[[], float] | None) -> Any:
    # What `_use_grad_for_differentiable` does around the step, without its graph-break calls.
    with torch.set_grad_enabled(bool(optimizer.defaults["differentiable"])):
        return raw_step(optimizer, closure)


class EagerAdam(Adam):
    """`torch.optim.Adam` for eager training: identical updates and state, no `torch._dynamo` import."""

    add_param_group = _add_param_group
    zero_grad = _zero_grad
    state_dict = _state_dict
    load_state_dict = _load_state_dict

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One Adam update, bit for bit torch's, without the wrapper that imports `torch._dynamo`.

        Autograd is off during the update unless the optimizer is `differentiable`, as in torch;
        errors are torch's (a sparse gradient, a closure that raises).
        """
        return _stepped(self, _adam_step, closure)


class EagerSGD(SGD):
    """`torch.optim.SGD` for eager training: identical updates and state, no `torch._dynamo` import."""

    add_param_group = _add_param_group
    zero_grad = _zero_grad
    state_dict = _state_dict
    load_state_dict = _load_state_dict

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One SGD update, bit for bit torch's, without the wrapper that imports `torch._dynamo`.

        Autograd is off during the update unless the optimizer is `differentiable`, as in torch;
        errors are torch's (a closure that raises).
        """
        return _stepped(self, _sgd_step, closure)
