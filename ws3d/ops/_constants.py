"""The solver constants, defined once: the Python reference and Triton kernels import them,
and the C++/CUDA kernels get them at build time as the -D definitions in ``DEFINES``."""

PROCRUSTES_REL_TOL = 1e-5  # s2 + d s3 below this times s1 leaves the rotation undetermined
# Jacobi sweeps on Horn's 4x4: the GPU kernels run this many; the CPU kernel stops sooner,
# once the off-diagonal is below the dtype's rounding (quadratic convergence), at most this many.
JACOBI_SWEEPS = 8
RECONSTRUCT_EPS = 1e-12  # a = |x~_k - x~_l|^2 below this means coincident reference joints

DEFINES = [
    f"-DWS3D_PROCRUSTES_REL_TOL={PROCRUSTES_REL_TOL!r}",
    f"-DWS3D_JACOBI_SWEEPS={JACOBI_SWEEPS}",
    f"-DWS3D_RECONSTRUCT_EPS={RECONSTRUCT_EPS!r}",
]
