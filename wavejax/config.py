"""Config defaults shared by every experiment, and the schema check run before any work.

A config file in `configs/` starts from `base_config()` and changes only what its experiment
needs; `validate(config)` turns every impossible value into one `ConfigError` sentence.
"""

from __future__ import annotations

import math
import os

import ml_collections

from wavejax.data import synthetic
from wavejax.data.sources import check_data_config, default_data_config
from wavejax.errors import ConfigError, WavejaxError

# config.task -> the module that runs it. Each module has run_task(config, workdir) -> summary dict (with a
# one-line "message"); non-lm modules also have validate_task(config), raising ConfigError.
TASKS = {"lm": "wavejax.train.loop", "field": "wavejax.field.task", "memory": "wavejax.memory.task"}
DTYPES = ("float32", "bfloat16")


def task_config(task: str) -> ml_collections.ConfigDict:
    """The sections every task has: task, seed and the device mesh. Simulation configs (field, memory) start here
    and add their own section; language-model configs start from base_config()."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1 = all devices left over
    c.mesh.fsdp = 1
    c.mesh.model = 1
    c.mesh.cpu_devices = 1  # CPU only: devices the cores are shown as (0 = one per core); parallel/mesh.py says why
    return c


def base_config() -> ml_collections.ConfigDict:
    """Defaults: nanoGPT's shakespeare-char baseline (configs/baseline.py uses them as is)."""
    c = task_config("lm")

    c.data = default_data_config()

    c.model = ml_collections.ConfigDict()
    c.model.family = "gpt"
    c.model.n_layer = 6
    c.model.n_head = 6
    c.model.d_model = 384
    c.model.block_size = 256
    c.model.mlp_ratio = 4
    c.model.dropout = 0.2  # embedding and residual dropout
    c.model.attn_dropout = 0.0  # >0 uses the einsum attention path (dot_product_attention has no dropout)
    c.model.use_bias = False
    c.model.dtype = "float32"  # compute dtype; parameters stay float32
    c.model.embedding = "learned"  # token embedding + learned positions
    c.model.attention = "dense"  # default attention of every block
    c.model.layer_attention = ()  # optional per-layer attention names (length n_layer) overriding `attention`
    c.model.mixer = "mlp"
    c.model.selector = "none"  # per-block token selection shared by attention and mixer (e.g. "wave_detector")
    c.model.layer_coupling = "none"  # cross-layer coupling: none | all | report (wavejax/nn/coupling.py)
    c.model.final_norm = True  # LayerNorm before the head
    c.model.head = "tied"  # tied: logits = x @ wte^T; or a registered head ("linear", ...)
    c.model.scaled_residual_init = True  # GPT-2's std/sqrt(2 n_layer) on residual projections (PhaseGPT had none)
    c.model.scan_layers = True  # runs of identical blocks go through nn.scan (one compiled block)
    c.model.scan_unroll = 0  # layers per scan iteration; 0 = auto: all of them on a CPU, 1 elsewhere (models/gpt.py)
    c.model.remat = False

    c.train = ml_collections.ConfigDict()
    c.train.steps = 5000
    c.train.batch_size = 64  # global batch, in sequences
    c.train.grad_accum = 1  # micro-batches per optimizer step (batch_size must divide by it)
    c.train.optimizer = "adamw"
    c.train.loss = "ce"  # training objective: cross-entropy plus this registered extra term (wavejax/train/losses.py)
    c.train.lr = 1e-3
    c.train.min_lr = 1e-4
    c.train.warmup_steps = 100
    c.train.decay_steps = 0  # 0 = decay over train.steps
    c.train.beta1 = 0.9
    c.train.beta2 = 0.99
    c.train.eps = 1e-8
    c.train.weight_decay = 0.1
    c.train.decay_mask = "matrices"  # matrices: weights and embeddings (nanoGPT); phasegpt: all but biases and embeddings
    c.train.schedule = "cosine"  # cosine: to min_lr at decay_steps; cosine_clamp: lr * max(min_lr/lr, cosine) (PhaseGPT)
    c.train.grad_clip = 1.0  # global-norm clipping; 0 disables
    c.train.eval_every = 250
    c.train.eval_batches = 200
    c.train.log_every = 10
    c.train.checkpoint_every = 250
    c.train.keep_checkpoints = 2
    c.train.sample_tokens = 200  # generated at each eval into samples.txt; 0 disables
    c.train.sample_prompt = "\n"
    c.train.progress = True
    return c


def config_module(path: str):
    """The config file at `path` as a module, loaded by path: nothing is put on sys.path, so a config file named
    like a standard-library module (configs/wave.py) never shadows it. Loading failures are one ConfigError."""
    import importlib.util

    if os.path.isdir(path):
        raise ConfigError(f"config {path!r} is a folder; pass a config file, e.g. --config=configs/baseline.py:tiny.")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass one of the files in configs/, e.g. --config=configs/baseline.py:tiny.")
    name = "_wavejax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ConfigError(f"config file {path!r} is not a Python file; pass a .py file from configs/.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"config file {path!r} has a syntax error at line {e.lineno}: {e.msg}; fix the file.") from None
    except ImportError as e:
        raise ConfigError(f"config file {path!r} cannot be loaded: {_first_line(e)}; fix its imports.") from None
    except WavejaxError:
        raise
    except Exception as e:
        raise ConfigError(f"config file {path!r} failed while loading ({e.__class__.__name__}: {_first_line(e)}); "
                          "fix the file.") from None
    return module


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """get_config(arg) of a config file (see config_module); every way a file can fail is one ConfigError."""
    module = config_module(path)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path!r} has no get_config() function; a config file defines "
                          "get_config(arg=None) returning an ml_collections.ConfigDict.")
    try:
        config = get_config(arg) if arg else get_config()
    except WavejaxError:
        raise
    except Exception as e:
        call = f"get_config({arg!r})" if arg else "get_config()"
        raise ConfigError(f"{call} in {path!r} raised {e.__class__.__name__}: {_first_line(e)}; fix the config "
                          "file.") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path!r} returned a {type(config).__name__}, not an "
                          "ml_collections.ConfigDict; build it with wavejax.config.base_config() or task_config().")
    if "task" not in config:
        raise ConfigError(f"the config of {path!r} has no 'task' key; build it with wavejax.config.base_config() "
                          "or task_config().")
    return config


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:160] if lines else e.__class__.__name__


def parent_of(config: ml_collections.ConfigDict, key: str):
    """(node, leaf) for a dotted key such as "train.lr"; an unknown key is a ConfigError naming the known ones."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        if not hasattr(node, "keys") or part not in node.keys():
            where = ".".join(parts[:i]) or "the config"
            known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none (it is a value)"
            raise ConfigError(f"unknown config key {key!r}: {where} has keys {known}.")
        if i < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def set_value(config: ml_collections.ConfigDict, key: str, value) -> None:
    node, leaf = parent_of(config, key)
    node[leaf] = value


# Presets that set a run's size (and, for the field, the original's configs): the base the other presets change, so
# they are applied first wherever they stand in "A+B" and the others may override what they set.
BASE_PRESETS = ("tiny", "cpu", "gpu", "small", "medium", "large", "xlarge")


def apply_preset(config: ml_collections.ConfigDict, arg: str | None, presets: dict) -> ml_collections.ConfigDict:
    """Applies the named presets (`configs/x.py:NAME` or `:NAME1+NAME2`) as dicts of dotted-key overrides. The result
    does not depend on their order: base presets (BASE_PRESETS) go first, and two other presets that set one key to
    different values are refused with a ConfigError naming both."""
    if not arg:
        return config
    names = arg.split("+")
    for name in names:
        if name not in presets:
            raise ConfigError(f"unknown config argument {name!r}; choose one of: {', '.join(sorted(presets))} (combine with +).")
    setters: dict = {}  # key -> (preset, value) among the non-base presets
    for name in names:
        if name in BASE_PRESETS:
            continue
        for key, value in presets[name].items():
            other = setters.setdefault(key, (name, value))
            if other[1] != value:
                raise ConfigError(f"presets {other[0]!r} and {name!r} contradict each other: {other[0]} sets {key}="
                                  f"{other[1]!r} and {name} sets {key}={value!r}; use one of them.")
    for name in sorted(names, key=lambda n: n not in BASE_PRESETS):  # stable: bases first, then the rest in order
        for key, value in presets[name].items():
            set_value(config, key, value)
    return config


def tiny_overrides() -> dict:
    """Settings that train a model end to end in well under a minute on a 2-core CPU."""
    return {
        "model.n_layer": 2,
        "model.n_head": 2,
        "model.d_model": 64,
        "model.block_size": 64,
        "model.dropout": 0.0,
        "train.steps": 200,
        "train.batch_size": 16,
        "train.warmup_steps": 20,
        "train.eval_every": 100,
        "train.eval_batches": 8,
        "train.log_every": 10,
        "train.checkpoint_every": 100,
        "train.sample_tokens": 64,
    }


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _positive(config, key: str, allow_zero: bool = False) -> None:
    value = _get(config, key)
    ok = value >= 0 if allow_zero else value > 0
    _require(ok and math.isfinite(value), f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}.")


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks values that types alone cannot; raises ConfigError with one sentence."""
    _require(config.task in TASKS, f"task must be one of {tuple(TASKS)}, got {config.task!r}.")
    if config.task == "lm":
        _validate_lm(config)
    else:
        import importlib

        importlib.import_module(TASKS[config.task]).validate_task(config)
    for axis in ("data", "fsdp", "model"):
        v = config.mesh[axis]
        _require(v == -1 or v >= 1, f"mesh.{axis} must be -1 (the rest) or >= 1, got {v}.")
    _require(sum(config.mesh[a] == -1 for a in ("data", "fsdp", "model")) <= 1, "at most one mesh axis may be -1.")
    cpu = config.mesh.get("cpu_devices", 1)
    _require(isinstance(cpu, int) and not isinstance(cpu, bool) and cpu >= 0,
             f"mesh.cpu_devices must be an integer >= 0 (0: one per CPU core, 1: one device), got {cpu!r}.")
    return config


def _validate_lm(config: ml_collections.ConfigDict) -> None:
    # Late: the registries fill when the model families are imported (flax, jax); config files import this module
    # for base_config() and must load in a blink, so that a broken config file is reported before JAX loads.
    import wavejax.models  # registers every family's parts, optimizers and objectives
    from wavejax.nn import registry
    from wavejax.nn.coupling import COUPLINGS
    from wavejax.nn.objectives import LOSSES
    from wavejax.nn.optimizers import DECAY_MASKS, OPTIMIZERS
    from wavejax.train.optim import SCHEDULES

    d, m, t = config.data, config.model, config.train
    _require(m.family in wavejax.models.FAMILIES,
             f"model.family must be one of {wavejax.models.FAMILIES}, got {m.family!r}.")

    check_data_config(d)
    if d.dataset == "synthetic":
        synthetic.check(d.synthetic, m.block_size)

    for key in ("model.n_layer", "model.n_head", "model.d_model", "model.block_size", "model.mlp_ratio"):
        _positive(config, key)
    if "init_std" in m:  # optional (configs/synthetic.py sets it); 0.02 where absent
        _positive(config, "model.init_std")
    _require(m.d_model % m.n_head == 0, f"model.d_model ({m.d_model}) must be divisible by model.n_head ({m.n_head}).")
    for key in ("model.dropout", "model.attn_dropout"):
        v = _get(config, key)
        _require(0.0 <= v < 1.0, f"{key} must be in [0, 1), got {v}.")
    _require(m.dtype in DTYPES, f"model.dtype must be one of {DTYPES}, got {m.dtype!r}.")
    _require(m.embedding in registry.EMBEDDINGS, f"model.embedding {m.embedding!r} is unknown; choose one of {sorted(registry.EMBEDDINGS)}.")
    _require(m.mixer in registry.MIXERS or m.mixer == "none",
             f"model.mixer {m.mixer!r} is unknown; choose none or one of {sorted(registry.MIXERS)}.")
    names = tuple(m.layer_attention) or (m.attention,)
    _require(not m.layer_attention or len(m.layer_attention) == m.n_layer,
             f"model.layer_attention has {len(m.layer_attention)} entries but model.n_layer is {m.n_layer}.")
    for name in names:
        _require(name in registry.ATTENTIONS, f"attention {name!r} is unknown; choose one of {sorted(registry.ATTENTIONS)}.")
    _require(m.selector == "none" or m.selector in registry.SELECTORS,
             f"model.selector {m.selector!r} is unknown; choose none or one of {sorted(registry.SELECTORS)}.")
    _require(m.head == "tied" or m.head in registry.HEADS,
             f"model.head {m.head!r} is unknown; choose tied or one of {sorted(registry.HEADS)}.")
    _require(m.layer_coupling in COUPLINGS, f"model.layer_coupling must be one of {COUPLINGS}, got {m.layer_coupling!r}.")
    _require(int(m.get("scan_unroll", 0)) >= 0,
             f"model.scan_unroll must be >= 0 (0: all layers on a CPU, 1 elsewhere), got {m.get('scan_unroll')!r}.")
    for kind, part in [("attention", n) for n in names] + [("mixer", m.mixer)]:
        _require(m.selector != "none" or not registry.uses_selection(kind, part),
                 f"{kind} {part!r} needs a token selector; set model.selector (e.g. wave_detector).")
    for name in sorted(set(names) | {m.embedding, m.mixer, m.selector, m.head}):
        if name in registry.CHECKS:
            registry.CHECKS[name](m)

    for key in ("train.steps", "train.batch_size", "train.grad_accum", "train.eval_every", "train.eval_batches",
                "train.log_every", "train.checkpoint_every", "train.keep_checkpoints"):
        _positive(config, key)
    for key in ("train.lr", "train.eps"):
        _positive(config, key)
    for key in ("train.min_lr", "train.warmup_steps", "train.decay_steps", "train.weight_decay", "train.grad_clip",
                "train.sample_tokens"):
        _positive(config, key, allow_zero=True)
    _require(t.min_lr <= t.lr, f"train.min_lr ({t.min_lr}) must not exceed train.lr ({t.lr}).")
    for key in ("train.beta1", "train.beta2"):
        v = _get(config, key)
        _require(0.0 <= v < 1.0, f"{key} must be in [0, 1), got {v}.")
    _require(t.batch_size % t.grad_accum == 0,
             f"train.batch_size ({t.batch_size}) must be divisible by train.grad_accum ({t.grad_accum}).")
    _require(t.decay_mask in DECAY_MASKS, f"train.decay_mask must be one of {sorted(DECAY_MASKS)}, got {t.decay_mask!r}.")
    _require(t.schedule in SCHEDULES, f"train.schedule must be one of {SCHEDULES}, got {t.schedule!r}.")
    _require(t.optimizer in OPTIMIZERS, f"train.optimizer {t.optimizer!r} is unknown; choose one of {sorted(OPTIMIZERS)}.")
    _require(t.loss in LOSSES, f"train.loss {t.loss!r} is unknown; choose one of {sorted(LOSSES)}.")
