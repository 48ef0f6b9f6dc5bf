"""Chat formatting: one object that turns messages into the exact token ids a model sees.

Everything that needs "the chat-templated prompt" (sampling, margin scores, activation extraction,
fine-tuning labels) goes through :class:`ChatFormatter`, so the ``last_prompt`` position always means the
last token of the templated prompt *including* the generation header (e.g. ``<|im_start|>assistant\\n``).
Templates are rendered to text and tokenized with ``add_special_tokens=False``: the template itself
decides about BOS.
"""

from __future__ import annotations

from typing import Sequence

from emprobe.errors import ModelError

Messages = Sequence[dict[str, str]]


class ChatFormatter:
    """Apply a tokenizer's chat template and tokenize prompts and prompt+response pairs."""

    def __init__(self, tokenizer, source: str = "tokenizer", model_name: str = "model") -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(
                f"{model_name} has no chat template; pass `chat_template` (a file or a Jinja "
                "string) or use a model that ships one"
            )
        self.tokenizer = tokenizer
        self.source = source

    def render(self, messages: Messages, add_generation_prompt: bool = True) -> str:
        """The templated text of ``messages`` (with the assistant header when ``add_generation_prompt``)."""
        try:
            return self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as e:  # jinja2 errors, template exceptions for unsupported roles
            raise ModelError(f"chat template ({self.source}) failed: {type(e).__name__}: {e}") from None

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Messages) -> list[int]:
        """Token ids of the templated prompt, generation header included; its last id is ``last_prompt``."""
        ids = self.encode(self.render(messages, add_generation_prompt=True))
        if not ids:
            raise ModelError("the chat template rendered an empty prompt")
        return ids

    def prompt_response_ids(self, messages: Messages, response: str) -> tuple[list[int], int]:
        """``(ids, n_prompt)``: prompt ids followed by the response's ids (with the template's end-of-turn).

        The prompt and the response are tokenized separately so that ``ids[:n_prompt]`` equals
        :meth:`prompt_ids` exactly; the response part is what a fine-tune's loss and a margin score see.
        """
        prompt = self.render(messages, add_generation_prompt=True)
        full = self.render(list(messages) + [{"role": "assistant", "content": response}], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ModelError(
                f"chat template ({self.source}) does not render prompt+response as a continuation of the prompt"
            )
        p_ids, r_ids = self.encode(prompt), self.encode(full[len(prompt):])
        if not r_ids:
            raise ModelError("empty response after templating")
        return p_ids + r_ids, len(p_ids)


def read_template(value: str) -> str:
    """A chat template given as a file path or as the Jinja string itself."""
    from pathlib import Path

    p = Path(value).expanduser()
    if "{" not in value and p.is_file():
        return p.read_text(encoding="utf-8")
    if "{" not in value:
        raise ModelError(f"chat template {value!r} is neither a file nor a Jinja template")
    return value
