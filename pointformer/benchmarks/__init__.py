"""The benchmark suite behind ``tools/benchmark.py``: one module per suite (``ops``, ``grouping``,
``attention`` with ``linear_attention``, ``data``, ``eval`` with ``eval_waymo`` and
``eval_nuscenes``, ``detector`` with ``backbones``, ``export``), a ``core`` they all share (timing,
interleaving, rows and speedups, load notes, the markdown report) and the command line (``cli``).

The top layer of the package: it may import every other part of pointformer, and nothing imports it.
"""
