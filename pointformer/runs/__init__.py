"""Runs built from a config: training (``train``), inference and evaluation over a converted
split (``inference``, ``evaluate``), the data side they share (``data``) and a synthetic
one-frame batch for a config (``synthetic_frame``). ``tools/train.py`` and
``tools/test.py`` (``train_cli``, ``evaluate_cli``) are thin wrappers over these."""
