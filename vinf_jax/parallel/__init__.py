"""Everything that knows about the clip axis: the mesh, halos, global context, synced norms.

This is the only package that names the mesh axis or calls a collective.
"""

from vinf_jax.parallel.context import AXIS, ClipParallelTemporal
from vinf_jax.parallel.mesh import clip_mesh, clip_sharding

__all__ = ["AXIS", "ClipParallelTemporal", "clip_mesh", "clip_sharding"]
