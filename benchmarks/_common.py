"""What every benchmark JSON reports besides its timings: peak RSS and the machine's load.

This project's benchmarks run on a shared 2-core machine (a nice'd training job and other
sessions' tests run beside them), so every figure comes with ``os.getloadavg()`` taken at its start
and end; compare figures only at similar load. Throughput is points x frames per second.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARED_NOTE = ("shared machine: other jobs (a nice'd training run, other sessions' tests) ran "
               "alongside; see loadavg")


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` of /proc/self/status (``ru_maxrss`` where absent;
    that one survives ``exec``, so a child of a big parent would start at the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def loadavg() -> list:
    """1/5/15-minute load averages (rounded), or None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine(**extra) -> dict:
    """Platform, CPU model and count, Python version, load average now, and the shared-machine note."""
    return dict(platform=platform.platform(), cpu=cpu_model(), cpu_count=os.cpu_count(),
                python=platform.python_version(), loadavg=loadavg(), note=SHARED_NOTE, **extra)


@contextlib.contextmanager
def random_params_file():
    """Path of a temporary ``params.msgpack`` of random PIPs++ weights (written by
    ``compare_pytorch.py --write-params``, the weights every side-by-side run uses); removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "params.msgpack")
        subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "compare_pytorch.py"),
                        "--write-params", path], check=True, capture_output=True, cwd=REPO)
        yield path


def run_child(cmd: list, **fallback) -> dict:
    """Runs a benchmark child process (``cmd``, from the repo root, the repo on ``PYTHONPATH``) and
    returns the JSON of its ``RESULT `` line, or ``{**fallback, 'error': <stderr tail>}`` when it
    printed none; echoes the row to stderr as it lands."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    row = json.loads(line[0][len("RESULT "):]) if line else {**fallback, "error": p.stderr[-2000:]}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row
