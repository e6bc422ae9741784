"""Torch-free reader for PyTorch ``.pth`` checkpoints (the zip serialisation format).

A ``torch.save`` file is a zip archive ``<name>/data.pkl`` (a pickle whose tensors are
persistent references to storages) plus one raw little/big-endian blob per storage under
``<name>/data/<key>``. This module unpickles it with a restricted unpickler that rebuilds
tensors as numpy arrays, so checkpoints can be read without importing torch.

Only the globals a state dict needs are allowed (tensor rebuild functions, storage types,
``collections.OrderedDict`` and plain builtins); anything else raises a ``ValueError``
naming the global, instead of executing arbitrary code.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import zipfile
import zlib
from typing import Any

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        dt = _STORAGE_DTYPES[name]
        if dt == "bfloat16":
            import ml_dtypes  # shipped with jax

            dt = ml_dtypes.bfloat16
        self.dtype = np.dtype(dt)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    itemsize = storage.dtype.itemsize
    if len(size) == 0:
        return np.array(storage[storage_offset])
    arr = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=tuple(size),
        strides=tuple(s * itemsize for s in stride))
    return np.array(arr)  # own the memory, contiguous


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    del requires_grad, backward_hooks, state
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch", "Size"): tuple,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, fileobj, zf: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(fileobj)
        self._zf = zf
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, np.ndarray] = {}
        byteorder_name = f"{prefix}/byteorder"
        self._byteorder = "little"
        if byteorder_name in zf.namelist():
            self._byteorder = zf.read(byteorder_name).decode().strip()

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ValueError(
            f"{self._path}: the checkpoint pickle references {module}.{name}, which this "
            "torch-free reader does not load (only tensors, dicts, lists and numbers are "
            "supported).")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise ValueError(f"{self._path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if isinstance(storage_type, _StorageType):
            dtype = storage_type.dtype
        else:
            raise ValueError(f"{self._path}: unsupported storage type {storage_type!r}")
        if key not in self._storages:
            raw = self._zf.read(f"{self._prefix}/data/{key}")
            arr = np.frombuffer(raw, dtype=dtype.newbyteorder(
                "<" if self._byteorder == "little" else ">"))
            if arr.size != numel:
                raise ValueError(f"{self._path}: storage {key} holds {arr.size} elements, "
                                 f"the pickle says {numel}")
            self._storages[key] = arr.astype(dtype, copy=False)
        return self._storages[key]


def load_torch_pickle(path: str | os.PathLike) -> Any:
    """Loads a ``torch.save`` zip checkpoint; tensors come back as numpy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    _check_zip(path)
    try:
        with zipfile.ZipFile(path) as zf:
            pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkls) != 1:
                raise ValueError(f"{path}: expected exactly one data.pkl in the archive, "
                                 f"found {pkls}")
            prefix = pkls[0][: -len("/data.pkl")] if "/" in pkls[0] else ""
            with zf.open(pkls[0]) as f:
                return _Unpickler(f, zf, prefix, path).load()
    except (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: corrupt PyTorch checkpoint archive ({type(e).__name__}: "
                         f"{e})") from e


def _check_zip(path: str) -> None:
    """Names what a file that is not a readable zip checkpoint is: empty, a truncated zip, the
    legacy (pre-1.6) pickle/tar format, or something else."""
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not a PyTorch checkpoint")
    with open(path, "rb") as f:
        head = f.read(512)
    if zipfile.is_zipfile(path):
        return
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path}: truncated or corrupt zip archive ({size} bytes; its end-of-archive "
                         "record is missing), e.g. an interrupted download or copy")
    if head.startswith(b"\x80") or (len(head) > 262 and head[257:262] == b"ustar"):
        raise ValueError(f"{path}: a legacy (pre-1.6, pickle/tar) PyTorch checkpoint; this format is "
                         "not supported, re-save it with a recent torch.save")
    raise ValueError(f"{path}: not a PyTorch checkpoint ({size} bytes, starts with {head[:8]!r}; "
                     "expected a torch.save zip archive)")


_STEP_RE = re.compile(r"^model-(\d+)\.pth$")


def resolve_checkpoint_path(path: str | os.PathLike) -> str:
    """A ``.pth`` file, or a directory meaning its highest-step ``model-*.pth``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = []
        for name in os.listdir(path):
            m = _STEP_RE.match(name)
            if m:
                found.append((int(m.group(1)), name))
        if not found:
            raise FileNotFoundError(
                f"{path}: directory holds no 'model-<step>.pth' checkpoint files "
                f"(contents: {sorted(os.listdir(path))[:10]})")
        return os.path.join(path, max(found)[1])
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the model state dict of a PyTorch checkpoint file or directory.

    Accepts ``{'model_state_dict': sd, ...}`` (the pips2 saver layout) or a bare state
    dict. A ``module.`` prefix (DataParallel) is stripped from every key that has it.
    """
    fpath = resolve_checkpoint_path(path)
    obj = load_torch_pickle(fpath)
    if isinstance(obj, dict) and "model_state_dict" in obj:
        sd = obj["model_state_dict"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        sd = obj
    else:
        keys = list(obj.keys())[:10] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{fpath}: no 'model_state_dict' in the checkpoint (top-level keys: "
                         f"{keys})")
    out = {}
    for k, v in sd.items():
        k2 = k[len("module."):] if k.startswith("module.") else k
        out[k2] = np.asarray(v)
    return out
