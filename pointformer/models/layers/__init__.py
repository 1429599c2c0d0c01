"""Building blocks shared by the models: attention layers (FlatFormer's, DSVT's set attention and
pooling) and positional encodings."""

from pointformer.models.layers.attention import GroupedSelfAttention, PostNormAttentionLayer
from pointformer.models.layers.attention_pooling import AttentionPooling
from pointformer.models.layers.learned_position import LearnedPositionEmbedding, window_relative_location
from pointformer.models.layers.positional import sinusoidal_position_encoding_2d
from pointformer.models.layers.set_attention import DSVTBlock, SetAttentionLayer

__all__ = [
    "AttentionPooling",
    "DSVTBlock",
    "GroupedSelfAttention",
    "LearnedPositionEmbedding",
    "PostNormAttentionLayer",
    "SetAttentionLayer",
    "sinusoidal_position_encoding_2d",
    "window_relative_location",
]
