"""Alignment: supervised fine-tuning on chat data (assistant-only loss)."""

from wxb.align.sft import (
    IGNORE_INDEX,
    EncodingStats,
    encode_chat,
    encode_conversations,
    end_of_turn_id,
    pack,
    render_with_spans,
)

__all__ = ["IGNORE_INDEX", "EncodingStats", "encode_chat", "encode_conversations",
           "end_of_turn_id", "pack", "render_with_spans"]
