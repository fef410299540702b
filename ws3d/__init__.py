"""ws3d: weakly supervised monocular 3D human pose from multi-view images.

The fused 2.5D pose ops live in :mod:`ws3d.ops`.
"""

__version__ = "0.1.0"
