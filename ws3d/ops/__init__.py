"""The three 2.5D pose ops, as differentiable PyTorch custom ops (``torch.ops.ws3d.*``).

* :func:`softargmax_2p5d` - spatial softmax + soft-argmax + depth summation
* :func:`reconstruct_3d` - closed-form root depth and 3D pose from a 2.5D pose
* :func:`weighted_procrustes` - batched weighted rigid / similarity alignment

Each has a pure-PyTorch ``*_reference`` twin (the tests' ground truth). Backends:
Triton on CUDA, the native C++ kernels of ws3d/csrc/ on CPU (the reference where they
cannot be built); ``WS3D_BACKEND`` or :func:`use_backend` forces one.
"""

from ._backend import BACKENDS, select_backend, use_backend
from ._validate import set_value_checks
from .procrustes import weighted_procrustes, weighted_procrustes_reference
from .reconstruct import reconstruct_3d, reconstruct_3d_reference
from .softargmax import softargmax_2p5d, softargmax_2p5d_reference

__all__ = [
    "BACKENDS",
    "reconstruct_3d",
    "reconstruct_3d_reference",
    "select_backend",
    "set_value_checks",
    "softargmax_2p5d",
    "softargmax_2p5d_reference",
    "use_backend",
    "weighted_procrustes",
    "weighted_procrustes_reference",
]
