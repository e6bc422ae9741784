#!/usr/bin/env bash
# The lean install, proved: a fresh venv with `pip install .` alone (no extras, no
# requirements.txt) runs `objtrack track` on a video and the README's Python quickstart, puts no
# top-level `configs` / `data_pipelines` modules into site-packages, answers a missing extra with
# one line, and stays within 1 GiB. Prints one JSON line with the size and the install time.
#
#   .ci/lean_install.sh            (from anywhere; needs python3 -m venv and access to PyPI)
#   LEAN_VENV_MAX_MIB=1024         the size limit (MiB, du of the whole venv)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
max_mib="${LEAN_VENV_MAX_MIB:-1024}"
work="$(mktemp -d "${TMPDIR:-/tmp}/objtrack-lean.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A clean copy of the tree (tracked and untracked, not ignored): no stale build/ or egg-info.
python3 - "$repo" "$work/src" <<'EOF'
import os, shutil, subprocess, sys
repo, dst = sys.argv[1:]
names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       cwd=repo, capture_output=True, check=True).stdout.decode().split("\0")
for name in filter(None, names):
    if os.path.isfile(os.path.join(repo, name)):
        os.makedirs(os.path.dirname(os.path.join(dst, name)), exist_ok=True)
        shutil.copy2(os.path.join(repo, name), os.path.join(dst, name))
EOF

python3 -m venv "$work/venv"
py="$work/venv/bin/python"
t0=$(date +%s)
"$py" -m pip install -q --disable-pip-version-check "$work/src"
t1=$(date +%s)
rm -rf "$work/src"

mkdir "$work/run"
cd "$work/run"  # not the checkout: the installed package only
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for name in configs data_pipelines; do
  if [ -e "$site/$name" ] || [ -e "$site/$name.py" ]; then
    echo "lean install: top-level '$name' in site-packages" >&2; exit 1
  fi
done
"$py" - <<'EOF'
import importlib.util, sys
for name in ("configs", "data_pipelines"):
    assert importlib.util.find_spec(name) is None, f"top-level {name} importable"
extras = ["tensorflow", "tensorflow_datasets", "tensorboard", "ml_collections", "chex",
          "skimage", "sklearn", "matplotlib", "pytest"]
present = [m for m in extras if importlib.util.find_spec(m) is not None]
assert not present, f"the lean install pulled in extras' packages: {present}"
# the subpackages are installed (found, not imported: importing the configs without the
# [train] extra is the one-line missing-extra error by design)
for sub in ("objtrack_jax.configs", "objtrack_jax.data_pipelines"):
    assert importlib.util.find_spec(sub) is not None, f"{sub} not installed"
EOF

export OBJTRACK_COMPILATION_CACHE="$work/xla"
# A small textured video with a known shift (written by the package's own H.264 writer).
"$py" - <<'EOF'
import cv2, numpy as np
from objtrack_jax.video_io import write_video
rng = np.random.default_rng(0)
scene = cv2.GaussianBlur((rng.random((220, 280, 3)) * 255).astype(np.uint8), (7, 7), 0)
frames = np.stack([scene[2 * t:2 * t + 128, 3 * t:3 * t + 160] for t in range(12)])
write_video("my_video.mp4", frames, fps=12)
EOF
"$work/venv/bin/objtrack" track my_video.mp4 --grid 3 --out out/tracks.mp4 --no-progress
test -s out/tracks.mp4 && test -s out/tracks.npz
"$py" -c "import sys; d = open('out/tracks.mp4', 'rb').read(); sys.exit(0 if b'avc1' in d else 'objtrack track did not write H.264')"

# The README's Python quickstart, as written (the first ```python block of README.md).
"$py" - "$repo/README.md" <<'EOF'
import re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), flags=re.S)
assert blocks, "README.md has no ```python block"
exec(compile(blocks[0], "README.md quickstart", "exec"), {"__name__": "__main__"})
EOF

# A missing extra: one line naming it, exit status 2.
set +e
msg="$("$work/venv/bin/objtrack" train --config objprior:tiny --workdir w 2>&1 >/dev/null)"
rc=$?
set -e
if [ "$rc" -ne 2 ] || [ "$(printf '%s\n' "$msg" | wc -l)" -ne 1 ] || [[ "$msg" != *"objtrack_jax[train]"* ]]; then
  echo "lean install: objtrack train without [train] gave rc=$rc: $msg" >&2; exit 1
fi

cd "$repo"
rm -rf "$work/run" "$work/xla"
kib=$(du -sk "$work/venv" | cut -f1)
mib=$((kib / 1024))
printf '{"check": "lean_install", "venv_mib": %d, "venv_bytes_apparent": %s, "install_s": %d, "python": "%s", "limit_mib": %d}\n' \
  "$mib" "$(du -sb "$work/venv" | cut -f1)" "$((t1 - t0))" "$("$py" -V 2>&1 | cut -d' ' -f2)" "$max_mib"
if [ "$mib" -gt "$max_mib" ]; then
  echo "lean install: the venv is $mib MiB, over $max_mib MiB" >&2; exit 1
fi
