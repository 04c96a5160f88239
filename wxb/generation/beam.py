"""Beam search, as transformers 5 does it (all beams of all prompts in one tensor, no loops).

Each prompt keeps ``num_beams`` running hypotheses. At every step:

1. Score every (beam, token) continuation: beam's log-probability + token's log-probability.
2. Take the best 2 x num_beams (more with several eos ids), so that even if the best
   num_beams all end here, num_beams others remain to continue.
3. The best num_beams candidates that did not end become the running beams.
4. Candidates that ended (eos, stop string, max length) and rank among the best num_beams
   enter the finished set, scored log-probability / generated_length ** length_penalty;
   the finished set keeps its best num_beams.
5. Stop when no running beam can beat the worst finished one (``early_stopping``: True stops
   as soon as num_beams are finished; False estimates the best score from the current
   length; "never" from the longest possible one when length_penalty > 0).

Shapes: (batch, beams, ...) inside; the model sees (batch * beams, ...).
"""

from __future__ import annotations

from typing import Any

import torch

from wxb.generation.decoding import Decoding, finished, model_step

NEG = -1.0e9  # "impossible" score; finite, so arithmetic on it stays finite


@torch.no_grad()
def beam_search(model: Any, d: Decoding) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns sequences (batch * num_return_sequences, length), best first per prompt, and
    their scores (batch * num_return_sequences,)."""
    cfg = d.config
    beams, penalty, early = cfg.num_beams, cfg.length_penalty, cfg.early_stopping
    rows, prompt = d.input_ids.shape
    batch, device = rows // beams, d.input_ids.device
    n_eos = 0 if d.eos_token_id is None else d.eos_token_id.numel()
    keep = max(2, 1 + n_eos) * beams
    in_top_beams = torch.arange(keep, device=device) < beams

    # transformers' fill value after a hypothesis ends, kept for token-for-token parity: the
    # pad id, but the first eos when the pad id is 0 (a falsy tensor there), and -1 without eos.
    fill = -1 if d.eos_token_id is None else d.pad_token_id or int(d.eos_token_id[0])
    running = torch.full((batch, beams, d.max_length), fill, dtype=torch.long, device=device)
    running[:, :, :prompt] = d.input_ids.view(batch, beams, prompt)
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = NEG  # all beams start equal: let only the first one expand
    done = running.clone()  # finished hypotheses, best first
    done_scores = torch.full((batch, beams), NEG, device=device)
    done_lengths = torch.full((batch, beams), prompt, device=device)
    is_done = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    batch_offset = torch.arange(batch, device=device)[:, None] * beams

    tokens, positions, cache, length = d.input_ids, d.position_ids, None, prompt
    while True:
        logits, cache = model_step(model, d, tokens, length, positions, cache)
        log_probs = torch.log_softmax(logits, dim=-1)
        if d.processors:
            log_probs = d.processors(running[:, :, :length].reshape(rows, length), log_probs)
        vocab = log_probs.shape[-1]
        log_probs = (log_probs.view(batch, beams, vocab) + running_scores[:, :, None])
        log_probs = log_probs.view(batch, beams * vocab)

        # 2. The best `keep` continuations of all beams (or `keep` sampled without replacement).
        if cfg.do_sample:
            picked = torch.multinomial(torch.softmax(log_probs, dim=-1), num_samples=keep)
            cand_scores, order = torch.gather(log_probs, 1, picked).sort(dim=-1, descending=True)
            picked = picked.gather(-1, order)
        else:
            cand_scores, picked = torch.topk(log_probs, k=keep)
        parent = picked // vocab
        candidates = _gather(running, parent)
        candidates[:, :, length] = picked % vocab
        ended = finished(d, candidates[:, :, :length + 1]) | (length + 1 >= d.max_length)

        # 3. Running beams: the best candidates that did not end.
        alive_scores = cand_scores + ended.to(torch.float32) * NEG
        best_alive = torch.topk(alive_scores, k=beams)[1]
        running = _gather(candidates, best_alive)
        running_scores = _gather(alive_scores, best_alive)
        beam_idx = _gather(parent + batch_offset, best_alive)

        # 4. Finished set: merge the candidates that just ended among the top beams.
        just_done = ended & in_top_beams[None, :]
        final = cand_scores / ((length + 1 - prompt) ** penalty)
        final += (is_done.all(dim=-1, keepdim=True) & (early is True)).to(torch.float32) * NEG
        final += (~improvable).to(torch.float32) * NEG
        final += (~just_done) * NEG
        merged_scores = torch.cat((done_scores, final), dim=1)
        best_done = torch.topk(merged_scores, k=beams)[1]
        done = _gather(torch.cat((done, candidates), dim=1), best_done)
        done_scores = _gather(merged_scores, best_done)
        done_lengths = _gather(torch.cat(
            (done_lengths, torch.full((batch, keep), length + 1, device=device)), dim=1),
            best_done)
        is_done = _gather(torch.cat((is_done, just_done), dim=1), best_done)

        cache.reorder(beam_idx.view(-1))
        length += 1

        # 5. Can a running beam still beat the worst finished hypothesis?
        if early == "never" and penalty > 0.0:
            best_length = d.max_length - prompt
        else:
            best_length = length - prompt
        best_possible = running_scores[:, :1] / (best_length ** penalty)
        worst_done = torch.where(is_done, done_scores.min(dim=1, keepdim=True)[0], NEG)
        improvable = improvable & (best_possible > worst_done).any(dim=-1, keepdim=True)
        all_full = bool(is_done.all()) and early is True
        if not bool(improvable.any()) or all_full or bool(ended.all()):
            break
        tokens = running[:, :, length - 1].reshape(rows, 1)
        positions = positions[:, -1:] + 1

    n = cfg.num_return_sequences
    out_length = int(done_lengths[:, :n].max())
    return done[:, :n, :out_length].reshape(batch * n, out_length), done_scores[:, :n].reshape(-1)


def _gather(tensor: torch.Tensor, beam_indices: torch.Tensor) -> torch.Tensor:
    """Select beams: tensor (batch, beams, ...), beam_indices (batch, k) -> (batch, k, ...)."""
    while beam_indices.dim() < tensor.dim():
        beam_indices = beam_indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, beam_indices, dim=1)
