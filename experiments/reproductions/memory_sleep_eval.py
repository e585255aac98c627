"""The prediction half of experiments/reproductions/memory_sleep.py (sections 2 and 4): each method's probabilities on
the query sets, the rows and tables, and the verdicts. memory_sleep.py's docstring says how each probability is formed."""

from __future__ import annotations

import functools

from experiments import common as C

EPS_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
LAM_GRID = tuple(i / 20 for i in range(21))
BATCH = 1024  # queries per compiled prototype / prior call
MODES = ("faithful", "sound")

# -- probabilities --------------------------------------------------------------------------------------------------

def log_softmax(z):
    import numpy as np
    from scipy.special import logsumexp

    z = np.asarray(z, np.float64)
    return z - logsumexp(z, axis=1, keepdims=True)


def nll_of(logp, targets):
    import numpy as np

    return -logp[np.arange(len(targets)), targets]


def row(method, condition, logp, targets, top_k, **extra) -> dict:
    from wavejax.memory import eval as mem_eval

    return mem_eval.metric_row(method, condition, nll_of(logp, targets), mem_eval.ranks(logp, targets), top_k, **extra)


def floor_sparse(p_calib, p_test, calib_targets, test_targets, unigram):
    """(1 - eps) p + eps unigram with eps of EPS_GRID fitted on the calibration queries: (log p calib, log p test, eps,
    the exact match of the unfloored p on the test queries (pessimistic ties: a target at p = 0 never counts))."""
    import numpy as np

    from wavejax.memory import eval as mem_eval

    def mix(p, eps):
        return np.log((1.0 - eps) * np.asarray(p, np.float64) + eps * unigram[None])

    best = min(EPS_GRID, key=lambda e: nll_of(mix(p_calib, e), calib_targets).mean())
    raw = float(np.mean(mem_eval.ranks(np.asarray(p_test, np.float64), test_targets) == 0))
    return mix(p_calib, best), mix(p_test, best), best, raw


def mixture(a, b, lam):
    """log((1 - lam) exp(a) + lam exp(b))."""
    import numpy as np

    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-lam) + a if lam < 1 else -np.inf, np.log(lam) + b if lam > 0 else -np.inf)


def fit_lambda(a_calib, b_calib, targets) -> float:
    return min(LAM_GRID, key=lambda lam: nll_of(mixture(a_calib, b_calib, lam), targets).mean())


def batched(fn, x, size: int = BATCH):
    """fn over fixed-size batches of x's leading axis (the last padded): one compile per shape."""
    import numpy as np

    out = []
    for start in range(0, len(x), size):
        piece = x[start : start + size]
        pad = size - len(piece)
        full = np.concatenate([piece, np.repeat(piece[-1:], pad, axis=0)]) if pad else piece
        out.append(np.asarray(fn(full))[: len(piece)])
    return np.concatenate(out)


def promoted_schemas(schemas):
    """The promoted schemas alone, in a table of the next power of two rows (>= 16): the only rows semantic.retrieve
    reads (valid & promoted), so its scores are unchanged and its work shrinks."""
    import jax.numpy as jnp
    import numpy as np

    from wavejax.memory.prototypes import empty_schemas

    rows = np.nonzero(np.asarray(schemas.valid & schemas.promoted))[0]
    out = empty_schemas(max(16, 1 << max(0, len(rows) - 1).bit_length()))
    idx = jnp.asarray(rows)
    return out.replace(**{f: getattr(out, f).at[: len(rows)].set(getattr(schemas, f)[idx])
                          for f in ("matrix", "key", "sightings", "sources", "promoted", "valid")})


@functools.lru_cache(maxsize=None)
def _jitted(kind: str, k: int, vocab: int):
    import jax

    from wavejax.memory import prior, semantic, store

    if kind == "proto":
        return jax.jit(lambda protos, schemas, q: semantic.predict_targets(protos, q, k, schemas=schemas,
                                                                           vocab_size=vocab))
    if kind == "prior":
        def one(q, protos):
            r = prior.superposed_prior(q, protos, k=k)
            return prior.dense_targets(r.target_ids, r.target_probs, vocab)

        return jax.jit(jax.vmap(one, in_axes=(0, None)))
    if kind == "route":
        return jax.jit(store.route, static_argnums=0)
    raise ValueError(kind)


class Evaluator:
    """Per seed and condition: the queries' contexts and the distributions every method needs, computed once."""

    def __init__(self, args, ctx, sets, unigram):
        self.args, self.ctx, self.sets, self.unigram = args, ctx, sets, unigram
        self.spec = ctx["spec"]
        self._contexts: dict = {}

    def contexts(self, seed, table, condition):
        import types

        from wavejax.memory import eval as mem_eval
        from wavejax.memory import store

        key = (seed, condition)
        if key not in self._contexts:
            holder = types.SimpleNamespace(table=store.context_table(self.spec, table))
            calib, test = self.sets[condition]
            self._contexts[key] = tuple(mem_eval.memory_contexts(self.spec, holder, q) for q in (calib, test))
        return self._contexts[key]

    def memory(self, seed, table, memory, condition):
        """(log p calib, log p test, empty test slot [Q] bool, empty calib, tau): softmax(cosine / tau)."""
        import jax.numpy as jnp
        import numpy as np

        from wavejax.memory import eval as mem_eval

        calib, test = self.sets[condition]
        c_calib, c_test = self.contexts(seed, table, condition)
        s_calib = mem_eval.memory_scores(self.spec, memory, c_calib, "cosine")
        s_test = mem_eval.memory_scores(self.spec, memory, c_test, "cosine")
        tau = mem_eval.fit_temperature(s_calib, calib.targets)
        route = _jitted("route", 0, 0)
        counts = np.asarray(memory.counts)
        empty = [counts[np.asarray(route(self.spec, jnp.asarray(c)))] == 0 for c in (c_calib, c_test)]
        return log_softmax(s_calib / tau), log_softmax(s_test / tau), empty[0], empty[1], tau

    def sparse(self, kind, seed, table, state, condition):
        """(log p calib, log p test, eps) of the prototypes (kind "proto") or the superposed prior ("prior")."""
        import jax.numpy as jnp

        calib, test = self.sets[condition]
        c_calib, c_test = self.contexts(seed, table, condition)
        vocab = self.spec.vocab_size
        if kind == "proto":
            fn = _jitted("proto", self.args.proto_k, vocab)
            schemas = promoted_schemas(state.schemas)
            probs = [batched(lambda q: fn(state.prototypes, schemas, jnp.asarray(q)), c)
                     for c in (c_calib, c_test)]
        else:
            fn = _jitted("prior", self.args.prior_k, vocab)
            probs = [batched(lambda q: fn(jnp.asarray(q), state.prototypes), c) for c in (c_calib, c_test)]
        return floor_sparse(probs[0], probs[1], calib.targets, test.targets, self.unigram)


def combined_rows(ev, label, condition, mem, sparse, sparse_label, top_k, seed) -> list[dict]:
    """The fallback (sparse where the memory's slot is empty) and the mixture rows."""
    import numpy as np

    calib, test = ev.sets[condition]
    m_calib, m_test, _, empty_test, tau = mem
    s_calib, s_test, eps, _ = sparse
    fallback = np.where(empty_test[:, None], s_test, m_test)
    lam = fit_lambda(m_calib, s_calib, calib.targets)
    return [row(f"{label}, {sparse_label} where the slot is empty", condition, fallback, test.targets, top_k,
                seed=seed, tau=tau, eps=eps, empty=float(empty_test.mean())),
            row(f"{label} + {sparse_label} mixed (λ fitted)", condition, mixture(m_test, s_test, lam), test.targets,
                top_k, seed=seed, tau=tau, lam=lam, eps=eps)]


def unigram_mixed(ev, label, condition, mem, top_k, seed) -> dict:
    """(1 - lam) p_memory + lam unigram, lam fitted: the floor any sparse addition must beat."""
    import numpy as np

    calib, test = ev.sets[condition]
    log_u = np.log(ev.unigram)[None]
    lam = fit_lambda(mem[0], np.broadcast_to(log_u, mem[0].shape), calib.targets)
    mixed = mixture(mem[1], np.broadcast_to(log_u, mem[1].shape), lam)
    return row(f"{label} + unigram mixed (λ fitted)", condition, mixed,
               test.targets, top_k, seed=seed, tau=mem[4], lam=lam)


def prediction_rows(args, ev, runs, seed: int, conditions, kind: str) -> list[dict]:
    """Section 2 (kind "proto": the prototypes' predict_targets) or section 4 (kind "prior": the superposed prior)
    rows of one seed."""
    rows = []
    run = runs[seed]
    table = run["table"]
    name = "prototypes" if kind == "proto" else "prior"
    for condition in conditions:
        _, test = ev.sets[condition]
        mem_none = ev.memory(seed, table, run["none"], condition)
        rows.append(row("memory, no sleep", condition, mem_none[1], test.targets, args.top_k, seed=seed,
                        tau=mem_none[4], empty=float(mem_none[3].mean())))
        rows.append(unigram_mixed(ev, "memory, no sleep", condition, mem_none, args.top_k, seed))
        for mode in MODES:
            state = run[mode]["state"]
            mem = ev.memory(seed, table, run[mode]["memory"], condition)
            label = f"memory after {mode} sleep"
            rows.append(row(label, condition, mem[1], test.targets, args.top_k, seed=seed, tau=mem[4],
                            empty=float(mem[3].mean()), prototypes=int(state.prototypes.count)))
            if kind == "prior":
                rows.append(unigram_mixed(ev, label, condition, mem, args.top_k, seed))
            sparse = ev.sparse(kind, seed, table, state, condition)
            full = (f"{mode} prototypes alone (predict_targets, k = {args.proto_k})" if kind == "proto"
                    else f"{mode} superposed prior alone (K = {args.prior_k})")
            rows.append(row(full, condition, sparse[1], test.targets, args.top_k, seed=seed, eps=sparse[2],
                            raw_exact=sparse[3]))
            rows += combined_rows(ev, label, condition, mem, sparse, name, args.top_k, seed)
    return rows


def baseline_rows(args, ctx, sets, conditions, unigram) -> list[dict]:
    import numpy as np

    from wavejax.memory import eval as mem_eval

    vocab = ctx["spec"].vocab_size
    chosen = {c: sets[c] for c in conditions}
    rows = mem_eval.evaluate_probabilities("unigram", lambda h: np.broadcast_to(unigram, (len(h), vocab)), chosen,
                                           args.top_k)
    for n in args.ngram_orders:
        model = mem_eval.NGramModel(ctx["train"], vocab, n)
        rows += mem_eval.evaluate_probabilities(f"{n}-gram (Witten-Bell)", model.probs, chosen, args.top_k)
    return rows


def summary_table(rows: list[dict], condition: str, top_k: int) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = []
    for method in methods:
        sel = [r for r in rows if r["method"] == method and r["condition"] == condition]
        if not sel:
            continue

        def cell(key, sel=sel):
            return C.fmt_mean_std([r[key] for r in sel], "{:.3f}", show_n=False)

        fitted = []
        for key, sym, fmt in (("tau", "τ", "{:.3g}"), ("eps", "ε", "{:.3g}"), ("lam", "λ", "{:.2f}"),
                              ("raw_exact", "unfloored exact", "{:.3f}")):
            values = [r[key] for r in sel if r.get(key) is not None]
            if values:
                fitted.append(f"{sym} {fmt.format(C.mean_std(values)[0])}")
        lines.append([method, cell("exact"), cell("top_k"), cell("nll"), ", ".join(fitted) or "—", len(sel)])
    return C.markdown_table(["method", "exact match", f"top-{top_k}", "NLL (nats/char)", "fitted (mean)", "seeds"],
                            lines)


def figures(rows: list[dict]) -> dict:
    out: dict = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for condition in dict.fromkeys(r["condition"] for r in rows if r["method"] == method):
            sel = [r for r in rows if r["method"] == method and r["condition"] == condition]
            node = out.setdefault(method, {}).setdefault(condition, {})
            for key in ("exact", "top_k", "nll", "tau", "lam", "eps", "empty", "raw_exact"):
                if any(r.get(key) is not None for r in sel):
                    node[key] = C.mean_std([r.get(key) for r in sel])[:2]
    return out


def mean_of(rows, method, condition, key):
    return C.mean_std([r[key] for r in rows if r["method"] == method and r["condition"] == condition])[0]


def best_ngram(rows, condition, args):
    names = [f"{n}-gram (Witten-Bell)" for n in args.ngram_orders]
    return min(names, key=lambda n: mean_of(rows, n, condition, "nll"))


def section2_verdict(rows, args) -> str:
    c = "heldout"
    methods = list(dict.fromkeys(r["method"] for r in rows))
    floor = min(("memory, no sleep", "memory, no sleep + unigram mixed (λ fitted)"),
                key=lambda m: mean_of(rows, m, c, "nll"))
    with_sleep = [m for m in methods if "after" in m or "prototypes alone" in m]
    best = min(with_sleep, key=lambda m: mean_of(rows, m, c, "nll"))
    f_nll, f_exact = mean_of(rows, floor, c, "nll"), mean_of(rows, floor, c, "exact")
    b_nll, b_exact = mean_of(rows, best, c, "nll"), mean_of(rows, best, c, "exact")
    none_exact = mean_of(rows, "memory, no sleep", c, "exact")
    dream = [mean_of(rows, f"memory after {m} sleep", c, "exact") for m in MODES]
    ng = best_ngram(rows, c, args)
    gain = f_nll - b_nll
    helps = "helps" if gain > 0.02 else ("barely helps" if gain > 0.005 else "does not help")
    seen = [mean_of(rows, m, "seen", k) for m in ("memory, no sleep", "memory after sound sleep")
            for k in ("exact", "nll")]
    return (f"Verdict: sleep {helps} held-out prediction — the dreamed slots give exact match {dream[0]:.3f} "
            f"(faithful) / {dream[1]:.3f} (sound) against {none_exact:.3f} without sleep, and the best method that "
            f"uses the sleep, \"{best}\", reaches NLL {b_nll:.3f} nats/char (exact {b_exact:.3f}) against {f_nll:.3f} "
            f"(exact {f_exact:.3f}) for \"{floor}\" without sleep and {mean_of(rows, ng, c, 'nll'):.3f} (exact "
            f"{mean_of(rows, ng, c, 'exact'):.3f}) for the {ng}; on seen queries dreaming costs recall (exact "
            f"{seen[0]:.3f} → {seen[2]:.3f}, NLL {seen[1]:.3f} → {seen[3]:.3f}).")


def section4_verdict(rows, args) -> str:
    parts, gains = [], []
    for c in ("heldout", "changed"):
        uni = mean_of(rows, "memory after sound sleep + unigram mixed (λ fitted)", c, "nll")
        mixed = mean_of(rows, "memory after sound sleep + prior mixed (λ fitted)", c, "nll")
        lam = mean_of(rows, "memory after sound sleep + prior mixed (λ fitted)", c, "lam")
        alone = mean_of(rows, f"sound superposed prior alone (K = {args.prior_k})", c, "nll")
        unigram = mean_of(rows, "unigram", c, "nll")
        gains.append(uni - mixed)
        parts.append(f"{c}: memory + prior {mixed:.3f} nats/char (λ = {lam:.2f}) vs memory + unigram {uni:.3f}, the "
                     f"prior alone {alone:.3f} vs the unigram alone {unigram:.3f}")
    what = ("adds nothing beyond a unigram guess" if max(gains) < 0.005
            else "adds a little beyond a unigram guess" if max(gains) < 0.05 else "adds more than a unigram guess")
    return (f"Verdict: on unseen and perturbed contexts the superposed prior {what} — " + "; ".join(parts)
            + " (sound sleep; the faithful rows are in the tables).")
