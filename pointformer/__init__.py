"""pointformer: sparse voxel transformers (FlatFormer, DSVT, ScatterFormer) for LiDAR 3D perception.

Subpackages, bottom layer first (each imports only those before it; docs/ARCHITECTURE.md):
``utils``, ``structures`` (typed containers), ``ops`` (native ops with pure-PyTorch references),
``data``, ``config``, ``models`` | ``evaluation`` | ``vis``, ``engine``, ``runs``, ``export``,
``benchmarks``. The native extension ``pointformer._C`` is loaded by ``pointformer.ops``.
"""

__version__ = "0.1.0"
