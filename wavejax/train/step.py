"""Pure train and eval steps; the loop jits them with explicit shardings.

train_step(state, x, y) -> (state, metrics) with x, y of shape [grad_accum, micro_batch, T]:
micro-batch gradients are averaged in a `lax.scan`, clipped and applied in one optimizer
update. A step whose loss or gradient is not finite leaves params and optimizer state
untouched and reports `finite = False`, so the state the loop checkpoints is always good.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from wavejax.nn.objectives import LOSSES, auxiliary_loss, cross_entropy, masked_accuracy, masked_cross_entropy


def tree_norm(tree) -> jax.Array:
    """Global L2 norm of a pytree, in float32 (optax.global_norm is deprecated in newer optax)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def flat_diagnostics(collection) -> dict:
    """The "diagnostics" collection (e.g. order parameters sowed by phase layers) as {"seg1_0/attn/R_tokens": array}.
    Sow's tuple index is dropped; a scanned segment keeps its leading layer axis."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(collection)[0]:
        name = "/".join(str(k.key) for k in path if hasattr(k, "key"))
        out[name] = jnp.asarray(leaf, jnp.float32)
    return out


def make_loss_fn(model, train_config=None, masked: bool = False):
    """Cross-entropy + sowed auxiliary losses + the extra term of the objective `train_config.loss` (default "ce").
    masked: only positions with a target >= 0 count (synthetic tasks)."""
    objective = LOSSES[train_config.loss if train_config is not None else "ce"]
    mutable = ["losses", "diagnostics", *objective.collections]
    ce_fn = masked_cross_entropy if masked else cross_entropy

    def loss_fn(params, x, y, rng):
        logits, variables = model.apply({"params": params}, x, deterministic=False, rngs={"dropout": rng}, mutable=mutable)
        ce = ce_fn(logits, y)
        extra, extra_diag = objective.extra(logits, y, variables, model.config, train_config)
        aux = auxiliary_loss(variables.get("losses", {})) + extra
        diag = flat_diagnostics(variables.get("diagnostics", {}))
        diag.update({f"objective/{k}": jnp.asarray(v, jnp.float32) for k, v in extra_diag.items()})
        return ce + aux, (ce, aux, diag)

    return loss_fn


def make_train_step(model, tx, lr_schedule, train_config=None, masked: bool = False):
    loss_fn = make_loss_fn(model, train_config, masked)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state, x, y):
        rng = jax.random.fold_in(state.rng, state.step)
        accum = x.shape[0]

        def micro(carry, inputs):
            grads_sum, ce_sum, aux_sum = carry
            xi, yi, i = inputs
            (_, (ce, aux, diag)), grads = grad_fn(state.params, xi, yi, jax.random.fold_in(rng, i))
            grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
            return (grads_sum, ce_sum + ce, aux_sum + aux), diag

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
        (grads, ce, aux), diag = jax.lax.scan(micro, init, (x, y, jnp.arange(accum)))
        grads = jax.tree.map(lambda g: g / accum, grads)
        ce, aux = ce / accum, aux / accum
        diag = jax.tree.map(lambda d: d.mean(axis=0), diag)  # over micro-batches
        grad_norm = tree_norm(grads)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # An update can overflow even from finite gradients, so the new parameters are checked too.
        finite = jnp.isfinite(ce) & jnp.isfinite(aux) & jnp.isfinite(grad_norm) & jnp.isfinite(tree_norm(params))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + 1, params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state)
        )
        metrics = {"loss": ce, "aux_loss": aux, "grad_norm": grad_norm, "lr": lr_schedule(state.step), "finite": finite,
                   "diagnostics": diag}
        return new_state, metrics

    return train_step


def make_eval_step(model, masked: bool = False):
    def eval_step(params, x, y):
        """(loss, diagnostics) of one batch; masked (synthetic tasks): the loss over scored positions, and their
        accuracy among the diagnostics."""
        logits, variables = model.apply({"params": params}, x, deterministic=True, mutable=["diagnostics"])
        diag = flat_diagnostics(variables.get("diagnostics", {}))
        if not masked:
            return cross_entropy(logits, y), diag
        return masked_cross_entropy(logits, y), {**diag, "accuracy": masked_accuracy(logits, y)}

    return eval_step
