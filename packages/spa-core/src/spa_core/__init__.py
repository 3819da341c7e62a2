"""Select and Pack Attention (SPA): gated token selection, packing of the selected tokens of all
images of a batch into fixed-length containers, and masked attention inside them."""

from .attention import BACKENDS, attention_bias, attention_groups, packed_attention, reference_attention
from .block import BlockSelection, SPABlock, SPAttention, drop_path
from .cost import (
    mlp_macs,
    msa_macs,
    spa_attention_macs,
    spa_block_macs,
    spa_macs_paper,
    swin_attention_macs,
    swin_block_macs,
    wmsa_macs,
)
from .gate import Gate, gate_features, multiscale_score
from .loss import selection_loss
from .packing import PackPlan, pack, pack_plan, unpack
from .selection import select_tokens, select_top_ratio
from .window import WindowLayout, effective_shift, pad_to_multiple, relative_position_index, window_layout

__all__ = [
    "BACKENDS",
    "BlockSelection",
    "Gate",
    "PackPlan",
    "SPABlock",
    "SPAttention",
    "WindowLayout",
    "attention_bias",
    "attention_groups",
    "drop_path",
    "effective_shift",
    "gate_features",
    "mlp_macs",
    "msa_macs",
    "multiscale_score",
    "pack",
    "pack_plan",
    "packed_attention",
    "pad_to_multiple",
    "reference_attention",
    "relative_position_index",
    "select_tokens",
    "select_top_ratio",
    "selection_loss",
    "spa_attention_macs",
    "spa_block_macs",
    "spa_macs_paper",
    "swin_attention_macs",
    "swin_block_macs",
    "unpack",
    "window_layout",
    "wmsa_macs",
]
__version__ = "0.1.0"
