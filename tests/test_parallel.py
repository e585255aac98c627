"""Multi-device training on 8 CPU devices (a subprocess, since the device count is fixed when JAX starts): the same
losses on one device and on data-parallel, FSDP and data×fsdp meshes; a checkpoint written on 8 devices restored onto
1 device and onto a 2×4 mesh; field trials and memory writes split over 8 devices equal one device; and the sharding
rules themselves."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, configs, run_with_8_devices

sys.path.insert(0, str(REPO / "tests"))  # tests/multidevice
from jax.sharding import PartitionSpec as P


@pytest.fixture(scope="module")
def meshes():
    return run_with_8_devices("train_meshes.py")


@pytest.mark.slow  # trains 3 steps on four meshes and restores twice in a subprocess (~1 min)
def test_three_steps_give_the_same_losses_on_every_mesh(meshes):
    assert meshes["devices"] == 8
    single = np.asarray(meshes["losses"]["single"])
    assert len(single) == 3 and single[-1] < single[0]
    for name in ("dp8", "fsdp8", "dp4_fsdp2"):
        np.testing.assert_allclose(np.asarray(meshes["losses"][name]), single, atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.slow
def test_fsdp_really_shards_parameters_and_optimizer_state(meshes):
    assert meshes["param_specs"]["single"] == ["P()"]
    assert any("'fsdp'" in s for s in meshes["param_specs"]["fsdp8"])
    assert any("'fsdp'" in s for s in meshes["opt_specs"]["fsdp8"])  # Adam's moments follow their parameters
    assert all("fsdp" not in s for s in meshes["param_specs"]["dp8"])  # pure data parallelism replicates


@pytest.mark.slow
def test_checkpoint_from_8_devices_restores_onto_1_device_and_a_2x4_mesh(meshes):
    for name, devices in (("restore_single", [1]), ("restore_dp2_fsdp4", [1, 2, 8])):
        r = meshes[name]
        assert r["step"] == 3 and r["identical"], name
        assert set(r["devices"]) <= set(devices), (name, r["devices"])
        assert abs(r["val_loss"] - meshes["val_loss_fsdp8"]) < 1e-5
    assert any("'fsdp'" in s for s in meshes["restore_dp2_fsdp4"]["param_specs"])


@pytest.mark.slow  # tiny field sweeps and a memory pass, each twice, in a subprocess (~20 s)
def test_sharded_simulations_equal_unsharded():
    """Field trials (the modes runner and the coupling sweep's Kuramoto trials, XLA and the Pallas kernel under
    shard_map) and memory writes split over 8 devices
    give what one device gives: float32 rounding only (the memory's sums of a few terms agree exactly here)."""
    diffs = run_with_8_devices("simulations.py")
    assert diffs["coupling_rows"] > 0 and diffs["pallas_rows"] > 0
    for name in ("modes", "coupling", "pallas_coupling", "memory"):
        assert diffs[name] <= 1e-5, (name, diffs[name])


@pytest.mark.slow  # tiny Harmonic GPT with the Pallas attention kernel (interpret mode), 3 runs of 3 steps (~30 s)
def test_pallas_attention_under_shard_map_gives_the_one_device_losses():
    """A sharded jit cannot split the kernel's custom call; under a data × fsdp mesh the model runs it per device
    through shard_map, and the losses are those of one device (and of the XLA path)."""
    losses = run_with_8_devices("kernel_meshes.py")
    single = np.asarray(losses["pallas_single"])
    assert len(single) == 3 and single[-1] < single[0]
    np.testing.assert_allclose(losses["pallas_dp2_fsdp4"], single, atol=1e-5, rtol=0)
    np.testing.assert_allclose(losses["xla_single"], single, atol=1e-5, rtol=0)


# -- the rules, on an abstract 2×2×2 mesh (no devices needed) ---------------------------------------------------------

def _mesh(data=2, fsdp=2, model=2):
    return jax.sharding.AbstractMesh((data, fsdp, model), ("data", "fsdp", "model"))


def _boxed(config_name: str, preset: str):
    from wavejax.models.gpt import build_model
    from wavejax.train.state import init_boxed_params

    c = configs(config_name).get_config(preset)
    return jax.eval_shape(lambda: init_boxed_params(build_model(c.model, 65), 0, c.model.block_size))


def test_logical_names_map_to_mesh_axes_by_the_rules():
    from wavejax.parallel.sharding import mesh_spec, param_names

    names = param_names(_boxed("baseline", "tiny"))
    assert names["seg0"]["block"]["attn"]["proj"]["qkv"]["kernel"] == ("layers", "embed", "qkv")  # nn.scan's axis
    assert names["embed"]["wte"]["embedding"] == ("vocab", "embed")
    assert names["seg0"]["block"]["ln1"]["scale"] == ("layers", "norm")
    mesh = _mesh()
    assert mesh_spec(("layers", "embed", "qkv"), (6, 64, 192), mesh) == P(None, "fsdp", "model")
    assert mesh_spec(("vocab", "embed"), (66, 64), mesh) == P("model", "fsdp")
    assert mesh_spec(("vocab", "embed"), (65, 64), mesh) == P(None, "fsdp")  # 65 does not divide: replicated
    assert mesh_spec(("experts", "embed", "mlp"), (4, 64, 256), mesh) == P(None, "fsdp", "model")
    assert mesh_spec(("layers", "norm"), (2, 64), mesh) == P()
    assert mesh_spec(("embed", "mlp"), (64, 256), _mesh(4, 1, 1)) == P()  # size-1 axes split nothing
    assert mesh_spec(("embed", "mlp"), (64, 256), _mesh(1, 2, 4)) == P("fsdp", "model")


FAMILY_PRESETS = [("baseline", "tiny"), ("harmonic", "tiny"), ("harmonic", "tiny+moe"), ("phase", "tiny"),
                  ("phase", "tiny+faithful"), ("wave", "tiny"), ("wave", "tiny+pure_elu"), ("wave", "tiny+physics"),
                  ("wave", "tiny+interference"), ("harmonic", "tiny+report_coupling")]


@pytest.mark.parametrize("config_name,preset", FAMILY_PRESETS, ids=lambda x: str(x))
def test_every_parameter_of_every_family_declares_its_logical_axes(config_name, preset):
    """Names are declared where each parameter is made (wavejax.nn.init.named); one made without them is an error
    here, not a silently replicated weight."""
    from wavejax.parallel.sharding import param_names, unnamed_params

    boxed = _boxed(config_name, preset)
    assert unnamed_params(boxed) == []
    flat = jax.tree.leaves(param_names(boxed), is_leaf=lambda x: isinstance(x, tuple))
    shapes = [x.value.shape for x in jax.tree.leaves(boxed, is_leaf=lambda x: hasattr(x, "names"))]
    assert [len(n) for n in flat] == [len(s) for s in shapes]  # one name per dimension


# -- two processes (multi-host on one machine, over gloo) ------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes train 3 steps (~30 s)
def test_two_process_run_matches_one_process(tmp_path):
    """The CLI's run() in two processes (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID), each with one CPU
    device and half of every batch, gives the losses of the same run in one process; only process 0 writes files."""
    from wavejax.runlog import read_metrics
    from wavejax.train.loop import Trainer

    from multidevice.train_meshes import config

    port = _free_port()
    workdir = tmp_path / "two"
    procs = []
    for pid in (0, 1):
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(pid))
        env.pop("XLA_FLAGS", None)
        procs.append(subprocess.Popen([sys.executable, str(REPO / "tests" / "multidevice" / "two_processes.py"), str(workdir)],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    two = json.loads(outs[0][0].strip().splitlines()[-1])
    assert not any(line.startswith("{") for line in outs[1][0].splitlines())  # process 1 reports nothing

    single = Trainer(config((1, 1, 1)), str(tmp_path / "one"))
    try:
        single.run()
    finally:
        single.close()
    one = [r["loss"] for r in read_metrics(str(tmp_path / "one")) if r["split"] == "train"]
    np.testing.assert_allclose(two["losses"], one, atol=1e-5, rtol=0)
    assert two["step"] == 3 and len(read_metrics(str(workdir))) == len(read_metrics(str(tmp_path / "one")))


@pytest.mark.parametrize("env,kind,kwargs", [
    ({}, None, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None, None),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}, "slurm", {}),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, "openmpi", {}),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}, "explicit",
     {"coordinator_address": "h:1234", "num_processes": 2, "process_id": 1}),
])
def test_cluster_detection(env, kind, kwargs):
    from wavejax.parallel.distributed import cluster_kind, initialize_arguments

    assert cluster_kind(env) == kind and initialize_arguments(env) == kwargs


def test_incomplete_coordinator_settings_are_one_sentence():
    from wavejax.errors import ConfigError
    from wavejax.parallel.distributed import initialize_arguments

    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES and JAX_PROCESS_ID must be set"):
        initialize_arguments({"JAX_COORDINATOR_ADDRESS": "h:1"})
