"""Shared test setup.

Without a GPU the Triton kernels run through Triton's CPU interpreter; that switch
must be set before ws3d.ops defines its kernels, hence here, before any test imports.
"""

import os
import tempfile

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A fresh torch.compile cache for every run: Inductor's on-disk cache does not key on a
# custom op's fake (meta) function, so a graph compiled before an op's outputs changed
# would come back with the old shapes and fail its own size asserts.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="ws3d-inductor-"))
