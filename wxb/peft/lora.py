"""LoRA (Hu et al. 2021): train a low-rank update B·A beside each frozen weight W.

    h = W x + (alpha / r) · B (A dropout(x))        A: (r, in), B: (out, r), r << in, out

A starts random and B at zero, so the wrapped model starts exactly equal to the base. Only A
and B (and any ``modules_to_save``, e.g. a fresh classifier head) train: for a 384-wide
attention projection at r=8 that is 6,144 numbers instead of 147,456. ``merge()`` folds
(alpha / r)·B·A into W for inference at no extra cost; ``unmerge()`` takes it back out.

    add_lora(model, LoraConfig(r=8, target_modules="q_proj|v_proj"))   wrap, freeze the rest
    save_adapter(model, "adapter/")        adapter_config.json + adapter_model.safetensors
    load_adapter(model, "adapter/")        a wxb or Hugging Face PEFT adapter folder
    merge_lora(model) / unmerge_lora(model) / merged_copy(model)
    with disable_adapters(model): ...      the base model's outputs (DPO's reference)

Adapters are files in the layout of Hugging Face PEFT (``base_model.model.<module>.lora_A
.weight``), so they move both ways between wxb and ``peft``. Any ``nn.Linear`` of any wxb model
can be wrapped, and so can QLoRA's 4-bit ``Linear4bit``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wxb.errors import CheckpointError, ConfigError
from wxb.io import atomic_save, atomic_write_json

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."  # where PEFT puts the base model's names
# Heads that a classifier trains whole, as PEFT's default modules_to_save for classifiers.
HEAD_NAMES = ("classifier", "score", "qa_outputs")
# PEFT features that change what an adapter computes and that wxb does not implement.
UNSUPPORTED = {"use_dora": False, "bias": "none", "layer_replication": None,
               "trainable_token_indices": None, "target_parameters": None}


@dataclass
class LoraConfig:
    """What to wrap and how; field names and meanings are those of ``peft.LoraConfig``.

    ``target_modules``: ``"all-linear"`` (every linear layer but the output layer and the
    classifier head), a list of module names (a name matches itself and any module whose
    full name ends with ``.<name>``), or a regular expression that must match a module's whole
    name or its last part (``"q_proj|v_proj"``).
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] | None = None
    use_rslora: bool = False  # scale by alpha / sqrt(r) (Kalajdzievski 2023)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    peft_type: str = "LORA"

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r <= 0:
            raise ConfigError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")

    def scaling(self, name: str, r: int) -> float:
        """alpha / r for the module ``name`` of rank ``r`` (``alpha_pattern`` may set alpha)."""
        alpha = self.lora_alpha
        for pattern, value in self.alpha_pattern.items():
            if re.match(rf"(.*\.)?({pattern})$", name):
                alpha = value
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r

    def to_peft_dict(self, fan_in_fan_out: bool = False) -> dict[str, Any]:
        """The ``adapter_config.json`` that ``peft.PeftModel.from_pretrained`` reads
        (``fan_in_fan_out``: the base stores (in, out) matrices, as GPT-2's Conv1D does)."""
        values = dataclasses.asdict(self)
        return {**values, "bias": "none", "fan_in_fan_out": fan_in_fan_out, "inference_mode": True,
                "init_lora_weights": True, "rank_pattern": {}, "use_dora": False,
                "layers_to_transform": None, "layers_pattern": None}

    @classmethod
    def from_peft_dict(cls, values: dict[str, Any], source: str) -> LoraConfig:
        if values.get("peft_type", "LORA") != "LORA":
            raise CheckpointError(f"{source}: peft_type {values['peft_type']!r} is not LoRA; "
                                  "wxb loads LoRA adapters")
        for key, default in UNSUPPORTED.items():
            if values.get(key, default) not in (default, False, None, [], {}):
                raise CheckpointError(f"{source}: {key}={values[key]!r} is a PEFT feature wxb "
                                      f"does not implement (it needs {key}={default!r})")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})


class LoraLinear(nn.Module):
    """A frozen linear layer (``nn.Linear`` or QLoRA's ``Linear4bit``) plus its low-rank
    update. (batch, ..., in) -> (batch, ..., out)."""

    def __init__(self, base_layer: nn.Module, r: int, scaling: float,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.scaling = r, scaling
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, self.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the update starts at zero
        self.merged = False
        self.disabled = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged or self.disabled:
            return out
        update = self.lora_B(self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype))))
        return out + (update * self.scaling).to(out.dtype)

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r)·B·A: (out, in), what merging adds to W."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def merge(self) -> None:
        """Fold the update into W: the same outputs, one matmul. A 4-bit W is re-quantized
        (as in PEFT, merging into NF4 rounds the sum to 4 bits)."""
        if not self.merged:
            self._add_to_base(self.delta_weight())
            self.merged = True

    def unmerge(self) -> None:
        if self.merged:
            self._add_to_base(-self.delta_weight())
            self.merged = False

    @torch.no_grad()
    def _add_to_base(self, delta: torch.Tensor) -> None:
        base = self.base_layer
        if isinstance(base, nn.Linear):
            base.weight += delta.to(base.weight.dtype)
        else:
            base.requantize_(base.dequantize() + delta.to(torch.float32))

    def dense(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes (update merged)."""
        base = self.base_layer
        linear = base.to_linear() if hasattr(base, "to_linear") else copy.deepcopy(base)
        if not self.merged:
            with torch.no_grad():
                linear.weight += self.delta_weight().to(linear.weight.dtype)
        linear.weight.requires_grad_(False)
        return linear

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, merged={self.merged}"


# ----------------------------------------------------------------------------- wrapping


def adaptable_names(model: nn.Module) -> list[str]:
    """Names of the layers LoRA can wrap: every linear layer (anything with ``in_features``
    and ``out_features``, so 4-bit ones too), wrapped ones included, their insides not."""
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoraLinear)]
    return [name for name, m in model.named_modules()
            if hasattr(m, "in_features") and hasattr(m, "out_features")
            and not any(name.startswith(f"{w}.") for w in wrapped)]


def output_layers(model: nn.Module) -> set[str]:
    """Linear layers that produce the vocabulary: ``lm_head`` and any weight tied to an
    embedding (BERT's MLM decoder). PEFT's "all-linear" leaves them alone too."""
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {name for name, m in model.named_modules()
            if name.rsplit(".", 1)[-1] == "lm_head"
            or (isinstance(m, nn.Linear) and id(m.weight) in tied)}


def default_modules_to_save(model: nn.Module) -> list[str]:
    """A classifier's head trains whole (it starts random); a language model's does not."""
    return [name for name in HEAD_NAMES if isinstance(getattr(model, name, None), nn.Module)]


def target_names(model: nn.Module, config: LoraConfig) -> list[str]:
    """The module names ``config.target_modules`` selects, or a ConfigError listing the
    model's linear layers when it selects none."""
    candidates = adaptable_names(model)
    saved = config.modules_to_save or []
    wanted = config.target_modules
    if isinstance(wanted, str) and wanted.lower() == "all-linear":
        outputs = output_layers(model)
        chosen = [n for n in candidates if n not in outputs]
    elif isinstance(wanted, str):
        try:
            pattern = re.compile(wanted)
        except re.error as err:
            raise ConfigError(f"target_modules {wanted!r} is not a regular expression: {err}")\
                from None
        chosen = [n for n in candidates
                  if pattern.fullmatch(n) or pattern.fullmatch(n.rsplit(".", 1)[-1])]
    else:
        chosen = [n for n in candidates if any(n == t or n.endswith(f".{t}") for t in wanted)]
    chosen = [n for n in chosen if not any(n == s or n.endswith(f".{s}") or n.startswith(f"{s}.")
                                           for s in saved)]
    if not chosen:
        raise ConfigError(f"target_modules {wanted!r} matches no linear layer of "
                          f"{type(model).__name__}; its linear layers are: "
                          f"{_summary(candidates)}")
    return chosen


def _summary(names: list[str]) -> str:
    """Layer names with their numbers folded: 'bert.encoder.layer.*.attention.self.query'."""
    folded = dict.fromkeys(re.sub(r"\.\d+\.", ".*.", n) for n in names)
    return ", ".join(folded) or "(none)"


def add_lora(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Wrap the target layers of ``model`` in place and freeze everything else but the LoRA
    weights and ``config.modules_to_save``. Returns the model, which remembers the config as
    ``model.lora_config``."""
    if config.modules_to_save is None:
        config = dataclasses.replace(config, modules_to_save=default_modules_to_save(model))
    names = target_names(model, config)
    too_small = [f"{n} ({m.out_features} x {m.in_features})" for n in names
                 if config.r > min((m := model.get_submodule(n)).in_features, m.out_features)]
    if too_small:
        raise ConfigError(f"LoRA rank r={config.r} is larger than layers it would adapt, where "
                          f"it saves nothing: {', '.join(too_small[:6])}; lower r or choose "
                          "target_modules")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        _replace(model, name, LoraLinear(base, config.r, config.scaling(name, config.r),
                                         config.lora_dropout))
    _train_modules_to_save(model, config.modules_to_save)
    model.lora_config = config
    return model


def lora_config_from(section: dict[str, Any], model: nn.Module) -> LoraConfig:
    """The LoraConfig of a checked ``finetune`` config section (see wxb.peft.strategy)."""
    targets = section["target_modules"]
    saved = section["modules_to_save"]
    return LoraConfig(r=section["r"], lora_alpha=section["lora_alpha"],
                      lora_dropout=section["lora_dropout"],
                      target_modules=targets if isinstance(targets, str) else list(targets),
                      modules_to_save=default_modules_to_save(model) if saved is None
                      else [saved] if isinstance(saved, str) else list(saved),
                      use_rslora=section["use_rslora"])


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _train_modules_to_save(model: nn.Module, names: list[str]) -> None:
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"modules_to_save names {name!r}, which "
                              f"{type(model).__name__} lacks") from None
        for p in module.parameters():
            p.requires_grad_(True)


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def has_lora(model: nn.Module) -> bool:
    return bool(lora_layers(model))


def merge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model).values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


@contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the LoRA paths are off: the base model's outputs. A trained
    ``modules_to_save`` head stays as trained (it is changed in place, not copied)."""
    layers = lora_layers(model).values()
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LoRA update folded in and every layer plain again
    (4-bit weights dequantized): an ordinary model to save or serve. ``model`` is unchanged."""
    plain = copy.deepcopy(model)
    for name, layer in lora_layers(plain).items():
        _replace(plain, name, layer.dense())
    for name, m in list(plain.named_modules()):
        if hasattr(m, "to_linear") and hasattr(m, "dequantize"):  # 4-bit, never wrapped
            _replace(plain, name, m.to_linear())
    plain.__dict__.pop("lora_config", None)
    return plain


# ----------------------------------------------------------------------------- files


def task_type(model: nn.Module) -> str | None:
    """PEFT's task type for a model class (it picks the PeftModel subclass on load)."""
    name = type(model).__name__
    for suffix, kind in (("ForCausalLM", "CAUSAL_LM"), ("LMHeadModel", "CAUSAL_LM"),
                         ("ForSequenceClassification", "SEQ_CLS"),
                         ("ForTokenClassification", "TOKEN_CLS"),
                         ("ForQuestionAnswering", "QUESTION_ANS"), ("MTModel", "SEQ_2_SEQ_LM")):
        if name.endswith(suffix):
            return kind
    return None


def save_adapter(model: nn.Module, folder: str | Path,
                 base_model_name_or_path: str | None = None) -> Path:
    """Write the adapter alone: ``adapter_model.safetensors`` (the LoRA weights and the
    ``modules_to_save``) and ``adapter_config.json``, each atomically, in PEFT's layout."""
    layers = lora_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no LoRA layers to save; add_lora first")
    config = model.lora_config
    state: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        state[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.weight
        state[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B.weight
    for name in config.modules_to_save or []:
        for key, value in model.get_submodule(name).state_dict().items():
            state[f"{PREFIX}{name}.{key}"] = value
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    # Saved as the wrapped layers' last names when those pick exactly them, else their full
    # names: PEFT matches list entries against the end of each module name.
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in layers})
    picked = [n for n in adaptable_names(model) if n.rsplit(".", 1)[-1] in suffixes]
    config = dataclasses.replace(
        config, target_modules=suffixes if len(picked) == len(layers) else sorted(layers),
        task_type=task_type(model),
        base_model_name_or_path=base_model_name_or_path or config.base_model_name_or_path)
    folder = Path(folder)
    atomic_save(folder / ADAPTER_WEIGHTS,
                lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    gpt2 = getattr(getattr(model, "config", None), "model_type", None) == "gpt2"
    atomic_write_json(folder / ADAPTER_CONFIG, config.to_peft_dict(fan_in_fan_out=gpt2))
    return folder


def read_adapter(folder: str | Path) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """The config and weights of an adapter folder (wxb's or PEFT's), names without PEFT's
    prefix and adapter name: ``{"model.layers.0.self_attn.q_proj.lora_A.weight": ...}``."""
    folder = Path(folder)
    config_path, weights_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path} not found: an adapter folder holds {ADAPTER_CONFIG} "
                                  f"and {ADAPTER_WEIGHTS} (save_adapter or PEFT writes them)")
    from wxb.models.base import read_config_json

    config = LoraConfig.from_peft_dict(read_config_json(config_path), str(config_path))
    state = {}
    for key, value in load_file(str(weights_path)).items():
        key = key.removeprefix(PREFIX).replace(".lora_A.default.", ".lora_A.")
        key = key.replace(".lora_B.default.", ".lora_B.").replace(".modules_to_save.default.", ".")
        if "lora_embedding" in key or "lora_magnitude" in key:
            raise CheckpointError(f"{weights_path}: {key} is a PEFT feature wxb does not load "
                                  "(LoRA on embeddings or DoRA)")
        state[key] = value
    return config, state


def load_adapter(model: nn.Module, folder: str | Path, *, trainable: bool = False) -> nn.Module:
    """Wrap ``model``'s layers that the adapter in ``folder`` adapts and load its weights;
    ``modules_to_save`` weights replace the model's. The rank of each layer comes from the
    weights. ``trainable=True`` leaves the adapter trainable (to go on training it), else
    everything is frozen. A mismatch with the model raises one error listing every problem."""
    config, state = read_adapter(folder)
    modules = dict(model.named_modules())
    lora = {k.rsplit(".lora_", 1)[0] for k in state if ".lora_A." in k or ".lora_B." in k}
    problems = []
    for name in sorted(lora):
        a, b = state.get(f"{name}.lora_A.weight"), state.get(f"{name}.lora_B.weight")
        layer = modules.get(name)
        if a is None or b is None:
            problems.append(f"{name} has only one of lora_A and lora_B")
        elif layer is None or not hasattr(layer, "in_features"):
            problems.append(f"{name}: no such linear layer in {type(model).__name__}")
        elif a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
            problems.append(f"{name}: adapter is {b.shape[0]} x {a.shape[1]} "
                            f"(r={a.shape[0]}), the layer {layer.out_features} x "
                            f"{layer.in_features}")
    saved = {k: v for k, v in state.items() if k.rsplit(".lora_", 1)[0] not in lora}
    own = model.state_dict()
    for key, value in saved.items():
        if key not in own:
            problems.append(f"{key}: no such weight in {type(model).__name__}")
        elif own[key].shape != value.shape:
            problems.append(f"{key}: adapter {tuple(value.shape)}, model {tuple(own[key].shape)}")
    if problems:
        raise CheckpointError(f"adapter {folder} does not fit {type(model).__name__} (an adapter "
                              f"for another base model?): {'; '.join(problems[:8])}"
                              + (f"; and {len(problems) - 8} more" if len(problems) > 8 else ""))
    for p in model.parameters():
        p.requires_grad_(False)
    for name in sorted(lora):
        layer = modules[name]
        if not isinstance(layer, LoraLinear):
            r = state[f"{name}.lora_A.weight"].shape[0]
            layer = LoraLinear(layer, r, config.scaling(name, r), config.lora_dropout)
            _replace(model, name, layer)
        with torch.no_grad():
            layer.lora_A.weight.copy_(state[f"{name}.lora_A.weight"])
            layer.lora_B.weight.copy_(state[f"{name}.lora_B.weight"])
        for p in (layer.lora_A.weight, layer.lora_B.weight):
            p.requires_grad_(trainable)
    with torch.no_grad():
        for key, value in saved.items():
            own[key].copy_(value)
    to_save = sorted({k.rsplit(".", 1)[0] for k in saved})
    if trainable:
        _train_modules_to_save(model, to_save)
    model.lora_config = dataclasses.replace(config, modules_to_save=to_save)
    return model
