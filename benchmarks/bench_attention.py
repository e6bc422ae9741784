"""Added cost of the contextual-attention stack over the encoder alone, per frame.

Times (jit, warm-up, median of ``--repeats`` runs, ``block_until_ready``) at each input size:
  * encoder alone:           BasicEncoder on [frames, H, W, 3]
  * attention alone:         ContextualAttention on [frames, H/8, W/8, 128]
  * encoder + attention:     the paper's feature net
and prints one JSON object with the config, the machine and the timings (seconds per frame).

    python benchmarks/bench_attention.py                      # 256x256 and 512x896, fp32
    python benchmarks/bench_attention.py --sizes 256x256 --frames 4 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from objtrack_jax.models.attention import ContextualAttention
from objtrack_jax.models.encoder import BasicEncoder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import loadavg, machine, peak_rss_mb  # noqa: E402


def _time(fn, *args, repeats: int) -> dict:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))            # compile + first run
    first = time.perf_counter() - t0
    jax.block_until_ready(fn(*args))            # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t0)
    return dict(median=statistics.median(runs), min=min(runs), compile_and_first=first)


def bench_size(h: int, w: int, frames: int, repeats: int, dtype) -> dict:
    enc, att = BasicEncoder(dtype=dtype), ContextualAttention(dtype=dtype)
    key = jax.random.PRNGKey(0)
    rgb = jax.random.uniform(key, (frames, h, w, 3), jnp.float32, -1.0, 1.0)
    enc_params = jax.jit(enc.init)(key, rgb[:1])["params"]
    fmap = jax.jit(lambda p, x: enc.apply({"params": p}, x))(enc_params, rgb)
    att_params = jax.jit(att.init)(key, fmap[:1])["params"]

    f_enc = jax.jit(lambda p, x: enc.apply({"params": p}, x))
    f_att = jax.jit(lambda p, x: att.apply({"params": p}, x))
    f_both = jax.jit(lambda pe, pa, x: att.apply({"params": pa}, enc.apply({"params": pe}, x)))

    t_enc = _time(f_enc, enc_params, rgb, repeats=repeats)
    t_att = _time(f_att, att_params, fmap, repeats=repeats)
    t_both = _time(f_both, enc_params, att_params, rgb, repeats=repeats)
    per = lambda t: t["median"] / frames
    return dict(
        input_hw=[h, w], fmap_hw=list(fmap.shape[1:3]), frames=frames,
        encoder_s_per_frame=per(t_enc),
        attention_alone_s_per_frame=per(t_att),
        encoder_plus_attention_s_per_frame=per(t_both),
        added_s_per_frame=per(t_both) - per(t_enc),
        added_relative_to_encoder=(per(t_both) - per(t_enc)) / per(t_enc),
        attention_alone_relative_to_encoder=per(t_att) / per(t_enc),
        raw=dict(encoder=t_enc, attention=t_att, encoder_plus_attention=t_both),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256x256,512x896", help="HxW list, comma separated")
    ap.add_argument("--frames", type=int, default=1, help="frames per call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    dtype = jnp.dtype(args.dtype)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    load0 = loadavg()
    results = [bench_size(h, w, args.frames, args.repeats, dtype) for h, w in sizes]
    print(json.dumps(dict(
        config=dict(sizes=sizes, frames=args.frames, repeats=args.repeats, dtype=args.dtype,
                    attention=dict(dim=128, depth=6, num_heads=8, axial_heads_per_axis=2,
                                   window_size=7)),
        machine=machine(jax=jax.__version__, devices=[str(d) for d in jax.devices()],
                        loadavg_start=load0),
        peak_rss_mb=peak_rss_mb(),  # no points here: time per frame is the throughput figure
        timings=results,
    ), indent=1))


if __name__ == "__main__":
    main()
