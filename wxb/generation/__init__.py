"""Text generation for every decoder-only wxb model, with transformers' semantics.

    from wxb.generation import generate, stream, TextStreamer
    out = generate(model, ids, max_new_tokens=50, do_sample=True, top_p=0.9, seed=0)
    for piece in TextStreamer(tok)(stream(model, ids, max_new_tokens=50)):
        print(piece, end="", flush=True)
"""

from wxb.generation.config import GenerationConfig
from wxb.generation.generate import GenerateOutput, generate, stream
from wxb.generation.streamer import TextStreamer

__all__ = ["GenerateOutput", "GenerationConfig", "TextStreamer", "generate", "stream"]
