"""emprobe: a mechanistic toolkit for studying emergent misalignment (EM).

Stages (data flows one way; no stage imports a later one)::

    models -> finetune -> evaluate -> probes -> analysis -> report
      data (question sets, chat datasets, built-in data) feeds every stage

Conventions used by every API that takes a layer or a position:

* layer ``l`` is the residual stream *after* decoder block ``l`` (0-based), i.e. the block's own
  output = TransformerLens ``blocks.{l}.hook_resid_post`` = HF ``hidden_states[l + 1]``, except for the
  last layer, where HF's last hidden state has already gone through the final norm;
* positions: ``last_prompt`` (last token of the chat-templated prompt, generation header included),
  ``prompt_mean`` and ``response_mean``.
"""

__version__ = "0.1.0"

from emprobe.errors import EmprobeError  # noqa: E402

__all__ = ["EmprobeError", "__version__"]
