"""Shared test setup.

Without a GPU the Triton kernels run through Triton's CPU interpreter; that switch
must be set before ws3d.ops defines its kernels, hence here, before any test imports.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
