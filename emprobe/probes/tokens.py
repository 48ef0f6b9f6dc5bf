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

import torch

from emprobe.errors import ConfigError

POSITIONS = ("last_prompt", "prompt_mean", "response_mean")
PADDING_SIDES = ("right", "left")


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
            raise ConfigError(f"unknown position {n!r}; use {', '.join(POSITIONS)} (or auto)")
    if "response_mean" in names and not has_responses:
        raise ConfigError("position response_mean needs responses, but these prompts have none (use a chat "
                          "JSONL, a judged answers table, or a question set with --contrast references)")
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
                out.append(h[rows, self.start + self.n_prompt - 1].float())
            else:
                w = self.weights(p).to(h.device)
                hf = torch.where(w[..., None] > 0, h, h.new_zeros(())).float()
                out.append(torch.einsum("bt,btd->bd", w, hf))
        return torch.stack(out, 1)


def make_batches(encoded: Sequence[Encoded], batch_size: int, pad_id: int, padding_side: str = "right",
                 sort: bool = True) -> list[TokenBatch]:
    """Split items into padded batches, longest first when ``sort`` (less padding, early OOM)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    if padding_side not in PADDING_SIDES:
        raise ConfigError(f"unknown padding side {padding_side!r}; use right or left")
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids)) if sort else list(range(len(encoded)))
    batches = []
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        rows = [encoded[i] for i in idx]
        width = max(len(r.ids) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        start = torch.zeros(len(rows), dtype=torch.long)
        for j, r in enumerate(rows):
            s = width - len(r.ids) if padding_side == "left" else 0
            ids[j, s:s + len(r.ids)] = torch.tensor(r.ids)
            mask[j, s:s + len(r.ids)] = 1
            start[j] = s
        pos = (torch.arange(width)[None] - start[:, None]).clamp(min=0)
        batches.append(TokenBatch(idx, ids, mask, pos, start, torch.tensor([r.n_prompt for r in rows]),
                                  torch.tensor([len(r.ids) for r in rows]), padding_side))
    return batches
