"""Evaluation: the official detection metrics, reimplemented in the package without TensorFlow.

``waymo``: Waymo Open Dataset 3D detection mAP / mAPH (LEVEL_1, LEVEL_2, object type and range
breakdowns), exactly as the official C++ metrics; ``waymo_cli`` is ``tools/eval.py waymo``.
"""
