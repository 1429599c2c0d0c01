"""pointformer: sparse voxel transformers (FlatFormer, DSVT, ScatterFormer) for LiDAR 3D perception.

Subpackages: ``structures`` (typed containers), ``ops`` (native ops with pure-PyTorch references),
``utils``. The native extension ``pointformer._C`` is loaded by ``pointformer.ops``.
"""

__version__ = "0.1.0"
