"""Checkpoints: what ``kgqa train --out DIR`` writes and ``kgqa eval/ask --model DIR`` reads. No
pickle: the weights in ``model.safetensors`` (CPU tensors, so a checkpoint loads on any device),
everything else in ``config.json``.

model.safetensors:
    "model.<name>"    every tensor of the RigelModel's state dict
    "encoder.<name>"  the encoder's, only when it trains (scratch, or --finetune-encoder); a frozen
                      transformers encoder is loaded by name instead

config.json (one object):
    "train"    the TrainConfig, field by field (fields this version does not know are ignored
               on load, so older and newer checkpoints load)
    "model"    RigelModel's constructor arguments (``RigelModel.dims``)
    "encoder"  the encoder's ``config()``: {"kind": "scratch", "vocab", "dim"} or
               {"kind": "transformers", "name", "finetune"}
    "kb"       {"path": the KB file trained on (absolute, or null), "relations": its relations with
               the inverses, "num_entities"}: a KB loaded for the model must match these
    ...        whatever the caller adds (``extra``): `kgqa train` adds "valid" (the metrics),
               "train_minutes", "world_size" and "device"
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from safetensors.torch import load_file, save_file

from .config import TrainConfig
from .encoder import encoder_from_config
from .kb import KnowledgeBase
from .model import RigelModel
from .qa import QA

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MODEL_PREFIX = "model."
ENCODER_PREFIX = "encoder."


def make_config(qa: QA, kb_path: Optional[str], extra: Optional[dict] = None) -> dict:
    """config.json's object for ``qa`` (see the module's docstring)."""
    config = {"train": {k: v for k, v in asdict(qa.cfg).items()}, "model": qa.model.dims,
              "encoder": qa.encoder.config(), "kb": {"path": kb_path, "relations": qa.kb.relations,
                                                     "num_entities": qa.kb.num_entities}}
    config.update(extra or {})
    return config


def check_kb(config: dict, kb: KnowledgeBase, where) -> None:
    """ValueError unless ``kb`` has the relations and entity count the model was trained on."""
    if kb.relations != config["kb"]["relations"] or kb.num_entities != config["kb"]["num_entities"]:
        raise ValueError(f"{where}: the KB does not match the one the model was trained on (relations or entity count differ)")


def train_config(config: dict) -> TrainConfig:
    """The TrainConfig of config.json, without the fields this version does not know."""
    return TrainConfig(**{k: v for k, v in config["train"].items() if k in TrainConfig.__dataclass_fields__})


def save(qa: QA, out_dir, kb_path: Optional[str], extra: Optional[dict] = None) -> None:
    """Writes ``out_dir``/model.safetensors and config.json; ``extra``: more keys for config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {f"{MODEL_PREFIX}{k}": v for k, v in qa.model.state_dict().items()}
    if not qa.encoder.frozen:
        state.update({f"{ENCODER_PREFIX}{k}": v for k, v in qa.encoder.state_dict().items()})
    # From the CPU, whatever device trained it: the file loads anywhere (load(device=...)).
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out / WEIGHTS))
    (out / CONFIG).write_text(json.dumps(make_config(qa, kb_path, extra), indent=1))


def load(model_dir, kb: Optional[KnowledgeBase] = None, device="cpu") -> QA:
    """The model of ``kgqa train --out model_dir`` on ``device`` (any: checkpoints hold CPU
    tensors), over ``kb`` or else the KB file it was trained on. ``QA.config`` holds config.json."""
    d = Path(model_dir)
    if not (d / CONFIG).is_file():
        raise FileNotFoundError(f"{d}: no {CONFIG} (is this a directory written by `kgqa train`?)")
    config = json.loads((d / CONFIG).read_text())
    if kb is None:
        path = config["kb"]["path"]
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"{d}: the KB the model was trained on ({path}) is gone; pass --kb")
        kb = KnowledgeBase.load(path)
    check_kb(config, kb, d)
    cfg = train_config(config)
    encoder = encoder_from_config(config["encoder"])
    model = RigelModel(**config["model"])
    state = load_file(str(d / WEIGHTS), device="cpu")
    model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)})
    if not encoder.frozen:
        encoder.load_state_dict({k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)})
    qa = QA(kb, encoder, model, cfg, device)
    qa.config = config
    return qa
