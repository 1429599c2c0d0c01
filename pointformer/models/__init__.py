"""Models: voxel encoders, 3D backbones, BEV mappings, 2D backbones, necks, heads, and the
``Detector`` that chains them; ``build_detector`` builds one from a config."""

from pointformer.models.build import build_detector
from pointformer.models.detector import Detector
from pointformer.models.outputs import Detections

__all__ = ["Detections", "Detector", "build_detector"]
