"""Alignment: supervised fine-tuning on chat data (assistant-only loss), reward models and DPO
on preference pairs."""

from wxb.align.dpo import DPOModel, dpo_loss, reference_logps, sequence_logps
from wxb.align.pairwise import PairwiseModel, PreferenceOutput, preference_metrics
from wxb.align.reward import RewardModel, reward_loss
from wxb.align.sft import (
    IGNORE_INDEX,
    EncodingStats,
    encode_chat,
    encode_conversations,
    end_of_turn_id,
    pack,
    render_with_spans,
)

__all__ = ["IGNORE_INDEX", "DPOModel", "EncodingStats", "PairwiseModel", "PreferenceOutput",
           "RewardModel", "dpo_loss", "encode_chat", "encode_conversations", "end_of_turn_id",
           "pack", "preference_metrics", "reference_logps", "render_with_spans", "reward_loss",
           "sequence_logps"]
