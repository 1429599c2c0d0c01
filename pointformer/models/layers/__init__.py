"""Building blocks shared by the models: attention layers and positional encodings."""

from pointformer.models.layers.attention import GroupedSelfAttention, PostNormAttentionLayer
from pointformer.models.layers.positional import sinusoidal_position_encoding_2d

__all__ = ["GroupedSelfAttention", "PostNormAttentionLayer", "sinusoidal_position_encoding_2d"]
