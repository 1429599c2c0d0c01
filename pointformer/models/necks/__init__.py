"""Necks: merge multi-scale BEV maps into one."""

from pointformer.models.necks.identity import IdentityNeck
from pointformer.models.necks.second_fpn import SECONDFPN

__all__ = ["SECONDFPN", "IdentityNeck"]
