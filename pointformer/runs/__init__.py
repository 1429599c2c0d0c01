"""Runs built from a config: training (``train``), inference and evaluation over a converted
split (``inference``), and the data side they share (``data``). ``tools/train.py`` and
``tools/test.py`` are thin wrappers over these."""
