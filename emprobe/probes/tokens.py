"""Token batches for extraction: chat templating, length-sorted batching, padding and position pooling.

Positions (every API taking a position uses these names):

* ``last_prompt``: the last token of the chat-templated prompt, generation header included (e.g. the
  ``\\n`` after ``<|im_start|>assistant``), i.e. the token whose output predicts the first response token;
* ``prompt_mean``: the mean over every token of the templated prompt (system turn and header included);
* ``response_mean``: the mean over the response tokens (the template's end-of-turn tokens included), the
  model-organisms recipe; needs items with responses.

Padding may be on either side: every row keeps its real tokens at positions ``0..n-1``
(``position_ids`` are derived from the mask), and pooling reads each row's own span, so batched results
equal an unbatched forward up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import einops
import torch

from emprobe.errors import ConfigError
from emprobe.sequences import PADDING_SIDES, length_batches, pad_rows, position_ids  # noqa: F401

POSITIONS = ("last_prompt", "prompt_mean", "response_mean")


def parse_positions(value: str | Sequence[str] | None, has_responses: bool) -> list[str]:
    """``"auto"`` (every position the items allow), ``"last_prompt,prompt_mean"`` or a list -> names.

    ``response_mean`` on prompts without responses raises :class:`ConfigError`.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return list(POSITIONS if has_responses else POSITIONS[:2])
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    names = [n for n in names if n]
    for n in names:
        if n not in POSITIONS:
            raise ConfigError(f"unknown position {n!r} in `positions`; use {', '.join(POSITIONS)} (or auto)")
    if "response_mean" in names and not has_responses:
        raise ConfigError("position response_mean needs responses, but these prompts have none (use a chat "
                          "JSONL, a judged answers table, or a question set with `contrast` references)")
    if not names:
        raise ConfigError("no position given")
    return sorted(set(names), key=POSITIONS.index)


@dataclass(frozen=True)
class Encoded:
    """One item's token ids; ``ids[:n_prompt]`` is the templated prompt, the rest the response."""

    ids: tuple[int, ...]
    n_prompt: int

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt


def encode(chat, messages, response: str | None) -> Encoded:
    """Template + tokenize one item with the model's :class:`~emprobe.models.ChatFormatter`."""
    if response is None:
        ids = chat.prompt_ids(messages)
        return Encoded(tuple(ids), len(ids))
    ids, n_prompt = chat.prompt_response_ids(messages, response)
    return Encoded(tuple(ids), n_prompt)


@dataclass
class TokenBatch:
    """A padded batch. ``index`` maps rows back to items; ``start`` is each row's first real column."""

    index: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    start: torch.Tensor
    n_prompt: torch.Tensor
    n_tokens: torch.Tensor
    padding_side: str
    _weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def n_real(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return int(self.n_tokens.sum())

    def to(self, device) -> "TokenBatch":
        move = lambda t: t.to(device)  # noqa: E731
        return TokenBatch(self.index, move(self.input_ids), move(self.attention_mask), move(self.position_ids),
                          move(self.start), move(self.n_prompt), move(self.n_tokens), self.padding_side)

    def span(self, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded-column ``[lo, hi)`` per row of ``prompt``, ``response``, ``all`` or ``last_prompt``."""
        s = self.start
        table = {"prompt": (s, s + self.n_prompt), "response": (s + self.n_prompt, s + self.n_tokens),
                 "all": (s, s + self.n_tokens), "last_prompt": (s + self.n_prompt - 1, s + self.n_prompt)}
        if where not in table:
            raise ConfigError(f"unknown span {where!r}; use {', '.join(table)}")
        return table[where]

    def mask(self, where: str) -> torch.Tensor:
        """Boolean ``[B, T]`` mask of the columns in :meth:`span` ``where``."""
        lo, hi = self.span(where)
        cols = torch.arange(self.width, device=lo.device)[None]
        return (cols >= lo[:, None]) & (cols < hi[:, None])

    def next_token_targets(self, where: str = "response") -> tuple[torch.Tensor, torch.Tensor]:
        """``(targets [B, T-1], mask [B, T-1])`` aligned with ``logits[:, :-1]``: column ``t`` predicts token
        ``t + 1``; the mask selects the tokens of span ``where`` (for :func:`emprobe.sequences.response_logprobs`)."""
        lo, hi = self.span(where)
        cols = torch.arange(1, self.width, device=lo.device)[None]
        return self.input_ids[:, 1:], (cols >= lo[:, None]) & (cols < hi[:, None])

    def weights(self, position: str) -> torch.Tensor:
        """``[B, T]`` float32 averaging weights of a mean position (rows sum to 1)."""
        if position not in self._weights:
            m = self.mask({"prompt_mean": "prompt", "response_mean": "response"}[position]).float()
            self._weights[position] = m / m.sum(1, keepdim=True).clamp(min=1)
        return self._weights[position]

    def pool(self, h: torch.Tensor, positions: Sequence[str]) -> torch.Tensor:
        """``[B, P, D]`` float32: the positions of ``h`` (``[B, T, D]``, one layer's block output).

        ``last_prompt`` is a gather; means are masked averages (padding columns never enter, even if a
        kernel left NaN there).
        """
        out = []
        rows = torch.arange(self.size, device=h.device)
        for p in positions:
            if p == "last_prompt":
                out.append(h[rows, (self.start + self.n_prompt - 1).to(h.device)].float())
            else:
                w = self.weights(p).to(h.device)
                hf = torch.where(w[..., None] > 0, h, h.new_zeros(())).float()
                out.append(einops.einsum(w, hf, "b t, b t d -> b d"))
        # on the batch's device: with a device_map over several GPUs, blocks' outputs live on different devices
        return einops.rearrange(out, "p b d -> b p d").to(self.input_ids.device)


def per_position(pooled: Sequence[torch.Tensor], positions: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{position: [B, L, D]}`` (the store layout) from one :meth:`TokenBatch.pool` output ``[B, P, D]`` per layer."""
    stacked = einops.rearrange(list(pooled), "l b p d -> p b l d")
    return {p: stacked[k] for k, p in enumerate(positions)}


def make_batches(encoded: Sequence[Encoded], batch_size: int, pad_id: int, padding_side: str = "right",
                 sort: bool = True) -> list[TokenBatch]:
    """Split items into padded batches, longest first when ``sort`` (less padding, early OOM)."""
    batches = []
    for idx in length_batches([len(e.ids) for e in encoded], batch_size, sort):
        rows = [encoded[i] for i in idx]
        ids, mask, start = pad_rows([r.ids for r in rows], pad_id, padding_side)
        batches.append(TokenBatch(idx, ids, mask, position_ids(start, ids.shape[1]), start,
                                  torch.tensor([r.n_prompt for r in rows]), torch.tensor([len(r.ids) for r in rows]),
                                  padding_side))
    return batches
