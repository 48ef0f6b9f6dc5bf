"""Skip the blocks an edit cannot change: record block outputs once, replay them under many edits.

An edit at layer ``l`` alone (steering at one layer, patching one layer) leaves blocks ``0..l`` exactly as they
were: only blocks ``l + 1`` onwards (and the LM head) see a different input. A sweep of such edits (steering α's
and control directions, patched cells) therefore needs blocks ``0..l`` once. :func:`record` keeps block ``l``'s
output of each forward of a clean pass; inside :func:`replay` each forward of the model skips blocks ``0..l``:
block ``l`` hands back the next recorded output (forward hooks on it, i.e. the edits of
:func:`~emprobe.models.edits.intervene`, still run on it) and the blocks before it pass their input through.

The replayed forwards must be the recorded ones, batch for batch and in order (same rows, same padding, no KV
cache: a skipped block writes no cache), which a deterministic scorer gives; a forward of another shape, or more
or fewer forwards than were recorded, raises a :class:`~emprobe.errors.ModelError`. The result is the full
forward's, bit for bit. Layer ``l`` = the residual stream after decoder block ``l`` (TL
``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from emprobe.errors import ModelError
from emprobe.models.arch import decoder_layers
from emprobe.models.edits import block_hidden, normalize_edits


class Recording(dict):
    """``{layer: [block output of each forward, in order]}`` (see :func:`record`); ``tuple_output`` says whether
    the blocks return their hidden state in a tuple (older transformers) or alone."""

    tuple_output: bool = False


@contextlib.contextmanager
def record(model: torch.nn.Module, layers: Sequence[int]) -> Iterator[Recording]:
    """Record the output of each block in ``layers`` (before any edit hooked on it) for every forward inside."""
    blocks = decoder_layers(model)
    normalize_edits(None, len(blocks), capture=layers)  # an unknown layer raises, as for any edit
    rec = Recording({int(layer): [] for layer in layers})

    def hook(layer: int):
        def fn(module, args, output):
            rec.tuple_output = isinstance(output, tuple)
            rec[layer].append(block_hidden(output).detach())
        return fn

    handles = [blocks[layer].register_forward_hook(hook(layer), prepend=True) for layer in rec]
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def replay(model: torch.nn.Module, recording: Recording, layer: int) -> Iterator[None]:
    """Inside, each forward of ``model`` skips blocks ``0..layer``: block ``layer`` returns the next of its outputs
    in ``recording`` (from :func:`record`), the blocks before it their input unchanged."""
    blocks = decoder_layers(model)
    if layer not in recording:
        raise ModelError(f"replay: layer {layer} was not recorded (recorded: {sorted(recording)})")
    queue, tuple_output = list(recording[layer]), recording.tuple_output
    used = [0]

    def wrap(h: torch.Tensor):
        return (h,) if tuple_output else h

    def passthrough(*args, **kwargs):
        return wrap(args[0] if args else kwargs["hidden_states"])

    def replayed(*args, **kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        if used[0] >= len(queue):
            raise ModelError(f"replay: more forwards than the {len(queue)} recorded at layer {layer}")
        h = queue[used[0]]
        used[0] += 1
        if h.shape != x.shape:
            raise ModelError(f"replay: a forward of shape {tuple(x.shape)} where the recorded one at layer {layer} "
                             f"was {tuple(h.shape)} (replay the recorded batches, in order)")
        return wrap(h.to(x.device, x.dtype))

    saved = [(b, b.__dict__.get("forward")) for b in blocks[:layer + 1]]
    for b, _ in saved[:-1]:
        b.forward = passthrough
    blocks[layer].forward = replayed
    try:
        yield
    finally:
        for b, prev in saved:
            if prev is None:
                del b.forward
            else:
                b.forward = prev
    if used[0] != len(queue):
        raise ModelError(f"replay: {used[0]} forwards where {len(queue)} were recorded at layer {layer}")
