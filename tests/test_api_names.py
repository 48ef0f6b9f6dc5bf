"""``ep.*`` names cannot be shadowed: after importing *every* subpackage and module of emprobe (as a notebook user
reading ``emprobe.finetuning`` or ``emprobe.evaluation`` would), each name of ``emprobe._API`` is still the verb or
class it documents, with the documented inputs (positional) and keyword-only options.

The trap this guards against: a subpackage named like a verb (``emprobe.finetune``) becomes an attribute of the
``emprobe`` package the moment it is imported, so ``ep.finetune(...)`` raised ``'module' object is not callable``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

#: name -> the verb's inputs (positional, in order; every other parameter is keyword-only), or "class"
DOCUMENTED = {
    "load_model": ["spec", "adapter", "dtype", "device"], "load_questions": ["source"],
    "load_dataset": ["source", "require_assistant"],
    "load_prompts": ["source", "contrast", "personas", "label_rule", "limit", "first_paraphrase"],
    "load_run": ["path"], "Direction": "class", "ActivationStore": "class", "FinetuneConfig": "class",
    "finetune": ["model", "data"], "evaluate": ["model", "questions"], "extract": ["model", "prompts"],
    "fit_direction": ["store"], "intervene": ["model", "edits", "capture"],
    "track": ["run", "directions", "questions"], "priors": ["features", "target"],
    "overlap": ["base", "tuned", "train", "questions"], "dynamics": ["runs_or_table"], "monitor": ["runs", "direction"],
    "patch": ["base", "tuned", "questions"], "steer": ["model", "direction", "questions"],
    "ablate": ["base", "tuned", "direction", "questions"], "explain": ["rises", "factors"],
    "margins": ["runs", "questions"], "Result": "class", "Verdict": "class",
    "study": ["config"], "demo": ["fast"], "StudyConfig": "class", "StudyResult": "class",
    "load_results": ["paths"], "consistency": ["results"], "mitigations": ["runs_or_table"], "diff": ["base", "tuned"],
    "screen": ["direction", "data"],
}
RESULT_VERBS = ("track", "priors", "overlap", "dynamics", "monitor", "patch", "steer", "ablate", "explain", "margins",
                "consistency", "mitigations", "diff", "screen")


def import_everything() -> list[str]:
    import emprobe

    names = [m.name for m in pkgutil.walk_packages(emprobe.__path__, "emprobe.") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    return names


def problems(ep: types.ModuleType) -> list[str]:
    """What is wrong with ``ep``'s public names (empty when every one is the documented verb or class)."""
    out = []
    for name, want in DOCUMENTED.items():
        value = getattr(ep, name)
        if isinstance(value, types.ModuleType):
            out.append(f"ep.{name} is the module {value.__name__}, not the {'class' if want == 'class' else 'verb'}")
        elif want == "class":
            if not inspect.isclass(value):
                out.append(f"ep.{name} is a {type(value).__name__}, not a class")
        elif not inspect.isfunction(value):
            out.append(f"ep.{name} is a {type(value).__name__}, not a function")
        else:
            params = inspect.signature(value).parameters.values()
            pos = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if pos != want:
                out.append(f"ep.{name}{inspect.signature(value)}: inputs {pos}, documented {want}")
    return out


def test_every_ep_name_survives_importing_every_subpackage():
    import emprobe as ep

    assert set(DOCUMENTED) == set(ep._API), "document each new ep.* name here (and in the README's Python API)"
    assert len(import_everything()) > 100
    assert problems(ep) == []
    assert [n for n in dir(ep) if isinstance(getattr(ep, n), types.ModuleType) and n in DOCUMENTED] == []


def test_analysis_verbs_return_results_and_take_keyword_options():
    import emprobe as ep
    from emprobe.result import Result

    for name in RESULT_VERBS:
        fn = getattr(ep, name)
        ret = inspect.signature(fn).return_annotation
        ret = ret if isinstance(ret, str) else getattr(ret, "__name__", str(ret))
        module = importlib.import_module(fn.__module__)
        for alt in ret.split("|"):  # a verb that reads results made elsewhere returns their own Result
            assert issubclass(getattr(module, alt.strip()), Result), name
    assert issubclass(ep.StudyResult, ep.Result)


def test_the_check_catches_the_old_trap(monkeypatch):
    """A subpackage named like a verb, once imported, shadows ``ep.finetune``: the check names it."""
    import emprobe as ep

    trap = types.ModuleType("emprobe.finetune")
    monkeypatch.setattr(ep, "finetune", trap, raising=False)  # what `import emprobe.finetune` used to do
    assert problems(ep) == ["ep.finetune is the module emprobe.finetune, not the verb"]
    with pytest.raises(TypeError, match="not callable"):
        ep.finetune("smollm2-135m-instruct")
