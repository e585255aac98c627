"""Logical axis names and the one table that maps them to mesh axes.

Every parameter names its dimensions where it is created (`wavejax.nn.init.named`, flax's
`nn.with_logical_partitioning`; a stacked layer axis from nn.scan is "layers"); activations are named in the trunk
with `constrain` (nn.with_logical_constraint). `LOGICAL_RULES` maps each name to mesh axes ("data", "fsdp", "model"):

    batch -> (data, fsdp)   activations' batch axis: data parallelism over both axes
    embed -> fsdp           parameters are split FSDP-style along their model-width axis ...
    vocab, qkv, heads, mlp -> model   ... and Megatron-style along heads / hidden units when model > 1
    layers, length, act_embed, experts, norm, None -> replicated

An axis that does not divide by its mesh axes' size stays replicated. Optimizer state is sharded like the parameter
it belongs to; everything else (step, RNG, counters) is replicated. A parameter created without names would be
replicated; tests/test_parallel.py checks that every family's parameters are all named.
"""

from __future__ import annotations

import contextlib
import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

LOGICAL_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("layers", None),
    ("experts", None),
    ("norm", None),
    ("vocab", "model"),
    ("embed", "fsdp"),
    ("qkv", "model"),
    ("heads", "model"),
    ("mlp", "model"),
)

def constrain(x, names: tuple):
    """Activation sharding by logical names; a no-op outside `mesh_context` (single device, sampling)."""
    return nn.with_logical_constraint(x, names)


@contextlib.contextmanager
def mesh_context(mesh: Mesh):
    """The mesh and the logical rules, for tracing and calling steps that use `constrain`."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_RULES):
        yield


def in_mesh(mesh: Mesh, fn):
    """fn called (and so traced) inside `mesh_context(mesh)`; the wrapper's `lower` lowers fn there too."""

    def call(*args, **kwargs):
        with mesh_context(mesh):
            return fn(*args, **kwargs)

    def lower(*args, **kwargs):
        with mesh_context(mesh):
            return fn.lower(*args, **kwargs)

    call.lower = lower
    return call


def per_device_in_context_mesh(fn, batch_args, replicated_args=()):
    """fn(*batch_args, *replicated_args) run by shard_map over the mesh set by `mesh_context`: batch_args are split
    on their leading axis over the data-like axes ('data', 'fsdp'), replicated_args are copied, outputs are joined on
    their leading axis. For custom calls (Pallas kernels) that a sharded jit cannot split; outside a mesh, on one
    device, or with a batch the data-like axes do not divide, fn is just called."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return fn(*batch_args, *replicated_args)
    axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names and mesh.shape[a] > 1)
    if not axes or batch_args[0].shape[0] % math.prod(mesh.shape[a] for a in axes):
        return fn(*batch_args, *replicated_args)  # e.g. initialisation on one example: nothing to split
    return _shard_leading(fn, None, P(axes), len(batch_args))(*batch_args, *replicated_args)


def _shard_leading(fn, mesh, batch: P, n_split: int):
    """shard_map of fn: its first n_split arguments and its outputs split on their leading axis by `batch`, the other
    arguments replicated (mesh None: the mesh set by `mesh_context`)."""

    def call(*args):
        specs = tuple(batch if i < n_split else P() for i in range(len(args)))
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=batch, check_vma=False)(*args)

    return call


def _is_box(x) -> bool:
    return isinstance(x, nn.LogicallyPartitioned)


def param_names(boxed_params):
    """The logical names of every parameter, from the boxed tree `model.init` returns (or its jax.eval_shape): a tree
    of tuples, None for a parameter created without names."""
    return jax.tree.map(lambda x: tuple(x.names) if _is_box(x) else None, boxed_params, is_leaf=_is_box)


def unnamed_params(boxed_params) -> list[str]:
    """The "/"-joined paths of parameters created without logical names (there should be none)."""
    flat = jax.tree_util.tree_flatten_with_path(boxed_params, is_leaf=_is_box)[0]
    return ["/".join(str(getattr(k, "key", k)) for k in path) for path, x in flat if not _is_box(x)]


def _axis_size(mesh: Mesh, axes) -> int:
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def mesh_spec(names: tuple, shape: tuple, mesh: Mesh) -> P:
    """PartitionSpec for logical names under LOGICAL_RULES; a dimension that does not divide stays whole."""
    rules = dict(LOGICAL_RULES)
    spec = []
    for name, size in zip(names, shape):
        axes = rules.get(name) if name is not None else None
        axes = tuple(a for a in ((axes,) if isinstance(axes, str) else axes or ()) if mesh.shape[a] > 1)  # size-1 axes split nothing
        ok = axes and size % _axis_size(mesh, axes) == 0
        spec.append((axes[0] if len(axes) == 1 else axes) if ok else None)
    while spec and spec[-1] is None:  # P(None, None) is P()
        spec.pop()
    return P(*spec)


def param_shardings(params, names, mesh: Mesh):
    """NamedSharding for every parameter (arrays or jax.ShapeDtypeStruct) from its logical names (`param_names`)."""
    flat_names = jax.tree.leaves(names, is_leaf=lambda x: x is None or isinstance(x, tuple))
    leaves, treedef = jax.tree.flatten(params)
    specs = [mesh_spec(n, tuple(x.shape), mesh) if n is not None else P() for n, x in zip(flat_names, leaves)]
    return jax.tree.unflatten(treedef, [NamedSharding(mesh, spec) for spec in specs])


def _dict_keys(path) -> tuple:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def state_shardings(state, names, mesh: Mesh):
    """Shardings for a TrainState: params by their logical names (`param_names`), optimizer-state leaves like the
    parameter whose dict path and shape they share (Adam's mu and nu), every other leaf replicated."""
    params = param_shardings(state.params, names, mesh)
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    by_keys = {_dict_keys(path): (tuple(x.shape), s) for (path, x), s in zip(flat, jax.tree.leaves(params))}
    rep = NamedSharding(mesh, P())

    def opt_leaf(path, x):
        match = by_keys.get(_dict_keys(path))
        return match[1] if match is not None and match[0] == tuple(x.shape) else rep

    opt = jax.tree_util.tree_map_with_path(opt_leaf, state.opt_state)
    return state.replace(step=rep, params=params, opt_state=opt, rng=rep)


# -- simulations: independent items split along a leading batch axis ---------------------------------------------------

class BatchSplit:
    """Splits the leading axis of independent simulation items (field trials, memory write rows) over this process's
    devices with a 1-D mesh, everything else replicated. With one device it does nothing, so callers need no branch.
    Each process runs its own copy of a sweep on its own devices (simulations do not span hosts)."""

    def __init__(self, enabled: bool = True, devices=None):
        devices = list(devices if devices is not None else jax.local_devices())
        self.n = len(devices) if enabled else 1
        if self.n > 1:
            mesh = Mesh(np.asarray(devices), ("batch",))
            self.split = NamedSharding(mesh, P("batch"))
            self.replicated = NamedSharding(mesh, P())

    def batch_size(self, batch: int) -> int:
        """`batch` rounded up to a multiple of the device count (callers pad the extra rows)."""
        return -(-batch // self.n) * self.n

    def put(self, *arrays):
        """The arrays with their leading axis split over the devices (as given on one device)."""
        if self.n == 1:
            return arrays if len(arrays) != 1 else arrays[0]
        out = tuple(jax.device_put(a, self.split) for a in arrays)
        return out if len(out) != 1 else out[0]

    def replicate(self, tree):
        """A pytree copied to every device (as given on one device)."""
        return tree if self.n == 1 else jax.device_put(tree, self.replicated)

    def per_device(self, fn, n_split: int):
        """fn run by shard_map: each device calls it on its own rows of the first n_split arguments (the rest
        replicated) and the outputs' leading axes are joined. For custom calls (Pallas kernels) that a sharded jit
        cannot split. On one device, fn itself."""
        return fn if self.n == 1 else jax.jit(_shard_leading(fn, self.split.mesh, P("batch"), n_split))

    def gather(self, tree):
        """A pytree brought back onto the first device (as given on one device)."""
        return tree if self.n == 1 else jax.device_put(tree, self.replicated.mesh.devices.flat[0])
