"""Checkpoints: written atomically, read with one clear error when they are not usable.

A checkpoint is a dict: ``model`` (state dict of the bare model), ``optimizer``,
``scheduler``, ``step``, ``rng`` (torch CPU and CUDA generator states), ``config``
(the nested config dict), ``data`` (a digest of each training split and of the
``train.init`` weights), ``git`` (the revisions that trained it: :func:`trained_by`) and
``format`` (:data:`FORMAT`). A run killed at any moment leaves either the previous file
or the new one, never a torn one: the file is written next to its destination, flushed
to disk, then renamed over it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import torch

from ws3d.errors import InputError, MissingFileError

FORMAT = "ws3d-checkpoint-1"
REQUIRED = ("model", "step", "config")


def git_revision() -> str:
    """The checked-out commit of this source tree, ``+dirty`` if tracked files differ from it."""
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict: each tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name} {flat.dtype} {tuple(tensor.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def trained_by(resumed: dict | None, now: str) -> str:
    """The revisions that trained a run: ``now``, after the resumed checkpoint's where that
    was trained by another (``"A then B"``), so that a run finished by other code says so.
    A resumed checkpoint from before runs recorded this counts as ``"unknown"``."""
    if resumed is None:
        return now
    before = resumed.get("git", "unknown")
    return before if before.rsplit(" then ", 1)[-1] == now else f"{before} then {now}"


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({**payload, "format": FORMAT}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a ws3d checkpoint on the CPU. Raises :class:`ws3d.errors.InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, foreign or corrupt: the file is the problem, not the code
        raise InputError(f"{path}: not a readable checkpoint, corrupt or truncated ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a ws3d checkpoint (no {FORMAT!r} format tag)")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def export_checkpoint(source: str | os.PathLike, out: str | os.PathLike, metrics: dict) -> dict:
    """A slim copy of a training checkpoint to ship or to start other runs from: the model
    weights in float32, the step, config, training data digests and the revisions that
    trained it, plus the ``metrics`` it reached; no optimiser, scheduler or RNG state."""
    payload = load_checkpoint(source)
    slim = {"model": {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()},
            "step": payload["step"], "config": payload["config"], "metrics": metrics,
            # a checkpoint from before runs recorded these says so rather than guessing
            "data": payload.get("data", {}), "git": payload.get("git", "unknown")}  # fmt: skip
    save_checkpoint(out, slim)
    return slim
