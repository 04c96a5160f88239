"""The engine's counters in Prometheus' text exposition format (version 0.0.4)."""

from __future__ import annotations

from wxb.serve.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus_text(engine: Engine) -> str:
    stats = engine.stats
    lines: list[str] = []

    def metric(name: str, kind: str, help: str, value: float) -> None:
        lines.extend([f"# HELP {name} {help}", f"# TYPE {name} {kind}", f"{name} {value}"])

    metric("wxb_requests_total", "counter", "Requests the engine accepted.", stats.requests)
    metric("wxb_requests_finished_total", "counter", "Requests that ended (any reason).",
           stats.finished)
    metric("wxb_prompt_tokens_total", "counter", "Prompt tokens prefilled.", stats.prompt_tokens)
    metric("wxb_generation_tokens_total", "counter", "Tokens generated.",
           stats.generated_tokens)
    metric("wxb_queue_depth", "gauge", "Requests waiting for a slot.", engine.queue_depth)
    metric("wxb_running_requests", "gauge", "Requests decoding in the batch.",
           len(engine.active))
    rate = stats.generated_tokens / stats.busy_seconds if stats.busy_seconds else 0.0
    metric("wxb_generation_tokens_per_second", "gauge",
           "Tokens generated per second the engine was busy.", rate)
    name = "wxb_time_to_first_token_seconds"
    lines += [f"# HELP {name} Seconds from a request's arrival to its first token.",
              f"# TYPE {name} histogram"]
    # The engine's buckets are cumulative already (each counts the requests at or below it).
    lines += [f'{name}_bucket{{le="{bound}"}} {count}'
              for bound, count in stats.ttft_buckets.items()]
    lines += [f'{name}_bucket{{le="+Inf"}} {stats.ttft_count}',
              f"{name}_sum {stats.ttft_sum}", f"{name}_count {stats.ttft_count}"]
    return "\n".join(lines) + "\n"
