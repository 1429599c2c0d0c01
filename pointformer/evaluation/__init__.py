"""Evaluation: the official detection metrics, reimplemented in the package without TensorFlow or
the devkits, and the official submission files.

``waymo``: Waymo Open Dataset 3D detection mAP / mAPH (LEVEL_1, LEVEL_2, object type and range
breakdowns), exactly as the official C++ metrics; ``waymo_cli`` is ``tools/eval.py waymo``.
``nuscenes``: nuScenes detection NDS, mAP and TP errors exactly as nuscenes-devkit 1.2.0
(``detection_cvpr_2019``); ``nuscenes_results`` reads and writes the results JSON;
``nuscenes_cli`` is ``tools/eval.py nuscenes``.
"""
