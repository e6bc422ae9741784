"""Two real JAX processes on one machine: disjoint per-process data, same global batch as 1 process.

The test spawns two copies of this file (``--worker``), each a JAX process with 2 CPU devices
(``jax.distributed.initialize`` on 127.0.0.1, gloo CPU collectives), builds global batches on a
4-device ``P('data')`` mesh from a tiny synthetic PointOdyssey-layout tree, gathers them with
``process_allgather`` and writes them to npz; the parent compares with the single-process stream.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GLOBAL_BATCH = 4
STEPS = 2
START_STEP = 1  # also exercises resuming in the multi-process setting


def _config(root):
    from objtrack_jax.data_pipelines import pipeline
    c = pipeline.default_data_config()
    c.root = root
    c.clip_len, c.num_points, c.min_points, c.crop_size = 4, 16, 2, (48, 64)
    c.clip_stride, c.frame_strides = 2, (1, 2)
    c.num_parallel_calls, c.prefetch = 1, 1
    c.seed = 3
    return c


def _worker(pid, port, root, out):
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    from jax.experimental import multihost_utils
    from objtrack_jax.data_pipelines import pipeline
    assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(),
                                                                   jax.device_count())
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Explicit,))
    it = pipeline.make_train_iterator(_config(root), GLOBAL_BATCH, start_step=START_STEP, mesh=mesh)
    saved = {}
    for s in range(STEPS):
        batch = next(it)
        for k, v in batch.items():
            assert v.shape[0] == GLOBAL_BATCH
            saved[f"{s}/{k}"] = np.asarray(multihost_utils.process_allgather(v, tiled=True))
        local = [np.asarray(sh.data) for sh in batch["example_index"].addressable_shards]
        saved[f"{s}/local_example_index"] = np.sort(np.concatenate(local))
        local = [np.asarray(sh.data) for sh in batch["clip_index"].addressable_shards]
        saved[f"{s}/local_clip_index"] = np.concatenate(local)
    saved["state_step"] = np.asarray(it.state()["step"])
    it.close()
    np.savez(os.path.join(out, f"proc{pid}.npz"), **saved)
    # No sync_global_devices here: its per-local-device cross-process gloo groups intermittently
    # hang at exit (see objtrack_jax.train.loop.gather_from_processes); shutdown() is a barrier.
    jax.distributed.shutdown()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_get_disjoint_data_and_the_single_process_global_batch(tmp_path):
    synthetic = pytest.importorskip("objtrack_jax.data_pipelines.synthetic")
    from objtrack_jax.data_pipelines import pipeline
    root = str(tmp_path / "synth")
    synthetic.generate_dataset(root, num_seqs={"train": 2}, frames=12, size=(64, 80), num_points=64,
                               progress=False, write_depths=False)
    out = tmp_path / "out"
    out.mkdir()
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(i), str(port), root,
                               str(out)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=150)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"worker {i} failed:\n{logs[i][-4000:]}"
    res = [dict(np.load(out / f"proc{i}.npz")) for i in range(2)]

    # Single-process reference: the same global batches from one process.
    it = pipeline.make_train_iterator(_config(root), GLOBAL_BATCH, start_step=START_STEP,
                                      process_index=0, process_count=1)
    ref = [next(it) for _ in range(STEPS)]
    it.close()
    for s in range(STEPS):
        a, b = res[0][f"{s}/local_example_index"], res[1][f"{s}/local_example_index"]
        assert not set(a.tolist()) & set(b.tolist())  # disjoint examples
        lb = GLOBAL_BATCH // 2
        g0 = (START_STEP + s) * GLOBAL_BATCH
        np.testing.assert_array_equal(a, np.arange(g0, g0 + lb))  # contiguous block per process
        np.testing.assert_array_equal(b, np.arange(g0 + lb, g0 + 2 * lb))
        for k, v in ref[s].items():
            for r in res:  # every process sees the same assembled global batch
                np.testing.assert_array_equal(r[f"{s}/{k}"], v, err_msg=f"step {s} {k}")
    # Within the first epoch, the processes' clips are disjoint too (a permutation of the table).
    clips = [np.concatenate([r[f"{s}/local_clip_index"] for s in range(STEPS)]) for r in res]
    assert not set(clips[0].tolist()) & set(clips[1].tolist())
    assert all(int(r["state_step"]) == START_STEP + STEPS for r in res)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    _worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
