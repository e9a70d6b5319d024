"""The schema of a checkpoint's config.json (``kgqa.checkpoint``), checked before anything is
allocated from it: every section's keys (required, unknown), types and bounds, and the facts the
sections repeat (a model's hops are in "train" and "model"). Sizes are positive and bounded, so a
tampered file cannot make the loader allocate absurdly; the bounds also keep the messages about
a key (the weights' shapes, checked next by ``kgqa.checkpoint``, bound what is allocated).

"train" is derived from TrainConfig (types from its annotations, bounds from its fields'
metadata: ``kgqa.config``), and so is the optional "calibration" from ``kgqa.calibration``'s
Calibration (what the model answers with; every key optional); "model" holds RigelModel's
constructor arguments, "encoder" an encoder's ``config()``, "kb" the KB trained on (where to find
it, and the relations the model's per-relation parameters are indexed by). Other top-level keys
are records that callers add (``extra`` of ``kgqa.checkpoint.save``) and that loading never reads:
they are not checked.

Every violation is a CheckpointError naming config.json and the key, e.g.
``/runs/m/config.json: model.hidden: 1000000000000 is above the limit 65536``."""
from __future__ import annotations

import json
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, Optional

from .calibration import Calibration
from .config import INT64, MAX_FOLLOW_EACH, MAX_HIDDEN, POLICY, TrainConfig
from .encoder import SCRATCH, TRANSFORMERS
from .features import ENTITY_FEATURES, ENTITY_FEATURES_BEFORE_NAME_KINDS
from .operations import MAX_COUNT_ANSWER
from .relation_map import first_repeat

SECTIONS = ("train", "model", "encoder", "kb")
# checked when present; loading takes the default when absent. "retrieval" (the candidate policy's
# state) is checked here for its place, and key by key when loaded (CandidatePolicy.from_state_dict).
OPTIONAL_SECTIONS = ("calibration", "retrieval")
# The largest part of a config.json is a scratch encoder's vocabulary (MAX_VOCAB words of ~10
# bytes: 40 MB) and the training history; a file above this is not one `kgqa train` wrote, and is
# not read into memory.
MAX_CONFIG_BYTES = 256 * 2**20
MAX_WIDTH = MAX_HIDDEN  # an encoder's vector width: MiniLM's is 384, the widest transformers about 16k
MAX_RELATIONS = 2**20  # relations with their inverses: Freebase and Wikidata have tens of thousands
MAX_VOCAB = 2**22  # a scratch encoder's words (an embedding row each): MetaQA's questions have ~40k
MAX_NAME = 4096  # an encoder's name or a path: the longest path Linux takes


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, or read as one: the message names the file and the key
    or tensor. A ValueError, which the CLI reports in one line with exit status 2."""


@dataclass(frozen=True)
class Spec:
    """What one key may hold: ``type`` (int, float, bool, str or list), ``lo``/``hi`` inclusive
    bounds (of the number; of the length for str and list), ``choices``, ``items`` (a list's
    element type), ``nullable`` (null allowed), ``required``, ``legacy`` (what a missing key
    means: the value of checkpoints written before the key existed)."""

    type: type
    lo: Optional[float] = None
    hi: Optional[float] = None
    choices: Optional[tuple] = None
    items: Optional[type] = None
    nullable: bool = False
    required: bool = True
    legacy: object = None


def _spec_of_field(owner: str, f, hint) -> Spec:
    nullable = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
    if nullable:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    items = None
    if typing.get_origin(hint) in (list, typing.List):
        hint, items = list, typing.get_args(hint)[0]
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[1:] == (Ellipsis,):  # Tuple[X, ...]: a JSON list
        hint, items = list, typing.get_args(hint)[0]
    if hint not in (int, float, bool, str, list):
        raise TypeError(f"{owner}.{f.name}: no schema for the type {hint!r}")
    m = f.metadata
    if hint in (int, list) and (m.get("lo") is None or m.get("hi") is None):  # a size or a count
        raise TypeError(f"{owner}.{f.name}: an {hint.__name__} field needs bounds (kgqa.config.limits)")
    return Spec(hint, m.get("lo"), m.get("hi"), m.get("choices"), items, nullable, m.get("required", False),
                m.get("legacy"))


def _specs_of(cls) -> Dict[str, Spec]:
    """The specs of a dataclass whose fields are made by ``kgqa.config.limits``."""
    hints = typing.get_type_hints(cls)
    return {f.name: _spec_of_field(cls.__name__, f, hints[f.name]) for f in fields(cls)}


TRAIN = _specs_of(TrainConfig)
# The optional "calibration" section (a checkpoint written before it existed answers by the
# default rule): Calibration.to_dict(), every key optional.
CALIBRATION = _specs_of(Calibration)
MODEL = {  # RigelModel.dims; the sizes it shares with TrainConfig have TrainConfig's specs
    "enc_dim": Spec(int, 1, MAX_WIDTH),
    "num_relations": Spec(int, 1, MAX_RELATIONS),
    **{k: TRAIN[k] for k in ("hops", "branches", "hidden", "entities", "relation_head", "topic_types")},
    # Each hop only over the relations its set has facts of (TrainConfig.restrict_hops chose it);
    # absent in every checkpoint before it, which took every relation at every hop.
    "restrict_hops": Spec(bool, required=False, legacy=False),
    # Learned entities' hops restricted where gold entities' are (RigelModel.chain_relations);
    # absent in every checkpoint before it, whose learned entities took every relation at every hop.
    "restrict_learned": Spec(bool, required=False, legacy=False),
    # Learned entities at inference: the first branch from each of its most likely (span, entity)
    # pairs alone (RigelModel.each_candidate); absent in every checkpoint before it (the soft seed).
    "follow_each": Spec(int, 0, MAX_FOLLOW_EACH, required=False, legacy=0),
    # Operations (kgqa.operations): the numeric attributes by relation name and the largest count;
    # absent in a model without them (every checkpoint before issue 20), which answers by paths.
    "attributes": Spec(list, 0, MAX_RELATIONS, items=str, required=False),
    "max_count": Spec(int, 0, MAX_COUNT_ANSWER, required=False),
    # Learned entities: the features the resolver's match scorer reads (kgqa.features); absent in a
    # model trained before NAME_KINDS, which reads the first ENTITY_FEATURES_BEFORE_NAME_KINDS.
    "entity_features": Spec(int, choices=(ENTITY_FEATURES_BEFORE_NAME_KINDS, ENTITY_FEATURES), required=False,
                            legacy=ENTITY_FEATURES_BEFORE_NAME_KINDS),
}
ENCODERS = {  # per "kind", the keys of that encoder's config()
    SCRATCH: {"kind": Spec(str, choices=(SCRATCH,)), "vocab": Spec(list, 2, MAX_VOCAB, items=str),
              "dim": Spec(int, 1, MAX_WIDTH // 2)},  # its vectors are 2 * dim wide (a bidirectional GRU)
    TRANSFORMERS: {"kind": Spec(str, choices=(TRANSFORMERS,)), "name": Spec(str, 1, MAX_NAME),
                   "finetune": Spec(bool)},
}
KB_COPY = "kb.txt"  # the KB a model directory may carry, beside its weights
KB = {
    # The KB file trained on, relative to the model directory (absolute in checkpoints written
    # before relative paths, and where there is no relative path: another drive on Windows).
    "path": Spec(str, 1, MAX_NAME, nullable=True),
    "absolute": Spec(str, 1, MAX_NAME, nullable=True, required=False),  # the same, absolute, when saved
    "copy": Spec(str, choices=(KB_COPY,), nullable=True, required=False),  # the KB the directory carries
    "relations": Spec(list, 1, MAX_RELATIONS, items=str),  # by name: kgqa.relation_map
    "num_entities": Spec(int, 1, INT64),  # a record: no parameter is per entity; ids are int64
}
SHARED = ("hops", "branches", "hidden", "entities", "relation_head", "topic_types")  # in "train" and in "model": they must agree


def _show(value) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
          dict: "an object"}


def _check_value(value, spec: Spec, fail, key: str):
    if value is None:
        if spec.nullable:
            return None
        fail(key, f"expected {_NAMES[spec.type]}, got null")
    t = spec.type
    # JSON's true and false are Python bools, which are ints: never taken for a number.
    ok = type(value) is t or (t is float and type(value) is int)
    if not ok:
        fail(key, f"expected {_NAMES[t]}, got {_show(value)}")
    if t is float:
        value = float(value)
        if not math.isfinite(value):
            fail(key, f"expected a finite number, got {_show(value)}")
    if spec.choices is not None and value not in spec.choices:
        fail(key, f"expected one of {', '.join(map(repr, spec.choices))}, got {_show(value)}")
    size, what = (len(value), "length ") if t in (str, list) else (value, "")
    if t is not bool and spec.lo is not None and size < spec.lo:
        fail(key, f"{what}{size} is below the limit {spec.lo}")
    if t is not bool and spec.hi is not None and size > spec.hi:
        fail(key, f"{what}{size} is above the limit {spec.hi}")
    if t is list and spec.items is not None:
        for i, item in enumerate(value):
            if type(item) is not spec.items:
                fail(f"{key}[{i}]", f"expected {_NAMES[spec.items]}, got {_show(item)}")
    return value


def _check_section(obj, specs: Dict[str, Spec], fail, key: str) -> dict:
    if type(obj) is not dict:
        fail(key, f"expected an object, got {_show(obj)}")
    unknown = [k for k in obj if k not in specs]
    if unknown:
        fail(f"{key}.{unknown[0]}", "unknown key (written by a newer kgqa, or edited)")
    out = {}
    for name, spec in specs.items():
        if name in obj:
            out[name] = _check_value(obj[name], spec, fail, f"{key}.{name}")
        elif spec.required:
            fail(f"{key}.{name}", "missing")
        elif spec.legacy is not None:  # written before the key existed: what such a checkpoint was
            out[name] = spec.legacy
    return out


def check_config(config, where) -> dict:
    """``config`` (config.json's object) checked against the schema: a copy with the four sections
    (and "calibration", when there is one) checked (numbers as their types) and the other keys as
    they are. CheckpointError naming ``where`` and the key otherwise."""

    def fail(key, problem):
        raise CheckpointError(f"{where}: {key}: {problem}")

    if type(config) is not dict:
        raise CheckpointError(f"{where}: expected a JSON object with the keys {', '.join(SECTIONS)}, "
                              f"got {_show(config)}")
    for name in SECTIONS:
        if name not in config:
            fail(name, "missing")
    train = _check_section(config["train"], TRAIN, fail, "train")
    model = _check_section(config["model"], MODEL, fail, "model")
    enc = config["encoder"]
    if type(enc) is not dict:
        fail("encoder", f"expected an object, got {_show(enc)}")
    if type(enc.get("kind")) is not str or enc["kind"] not in ENCODERS:
        fail("encoder.kind", f"expected one of {', '.join(map(repr, ENCODERS))}, got {_show(enc.get('kind'))}")
    encoder = _check_section(enc, ENCODERS[enc["kind"]], fail, "encoder")
    kb = _check_section(config["kb"], KB, fail, "kb")
    # The facts written twice must agree.
    for name in SHARED:
        if name in train and train[name] != model[name]:
            fail(f"train.{name}", f"{_show(train[name])}, but model.{name} is {_show(model[name])}")
    if ("attributes" in model) != ("max_count" in model):
        fail("model.max_count" if "attributes" in model else "model.attributes",
             "missing (a model with operations has both attributes and max_count)")
    unknown = [a for a in model.get("attributes", ()) if a not in kb["relations"]]
    if unknown:
        fail("model.attributes", f"{_show(unknown[0])} is not one of kb.relations")
    if model["num_relations"] != len(kb["relations"]):
        fail("model.num_relations", f"{model['num_relations']}, but kb.relations lists {len(kb['relations'])}")
    if kb.get("absolute") is not None and not Path(kb["absolute"]).is_absolute():
        fail("kb.absolute", f"{_show(kb['absolute'])} is not an absolute path")
    twice = first_repeat(kb["relations"])
    if twice is not None:  # they are matched to a KB's by name
        fail("kb.relations", f"{_show(twice)} is listed twice")
    if model["entities"] == "learned" and (encoder["kind"] != TRANSFORMERS or encoder["finetune"]):
        # kgqa.trainer.train refuses these too: the resolver reads a frozen encoder's token states
        fail("model.entities", "'learned' needs a frozen transformers encoder, and this checkpoint's is "
                               f"{'fine-tuned' if encoder['kind'] == TRANSFORMERS else encoder['kind']}")
    policy = train.get("retrieval") == POLICY and model["entities"] == "learned"
    if policy != ("retrieval" in config):
        fail("retrieval", "missing: train.retrieval is 'policy'" if policy else
             "present, but only a model with learned entities and train.retrieval 'policy' has one")
    if "retrieval" in config and type(config["retrieval"]) is not dict:
        fail("retrieval", f"expected an object, got {_show(config['retrieval'])}")
    checked = {**config, "train": train, "model": model, "encoder": encoder, "kb": kb}
    if "calibration" in config:
        checked["calibration"] = _check_section(config["calibration"], CALIBRATION, fail, "calibration")
    return checked


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:  # json keeps the last silently: one of the two was edited in
            raise ValueError(f"the key {k!r} appears twice in one object")
        out[k] = v
    return out


def read_config(path) -> dict:
    """config.json at ``path``, parsed and checked (``check_config``); CheckpointError naming the
    file (and the key) if it is missing, too large, empty, not JSON, or breaks the schema."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: no such file (is {p.parent} a directory written by `kgqa train`?)") from None
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{p}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, which no checkpoint's config is")
    if not data.strip():
        raise CheckpointError(f"{p}: empty (a save that was cut short?)")
    try:
        config = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # _no_duplicates
        raise CheckpointError(f"{p}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{p}: nested too deeply to be a checkpoint's config") from None
    return check_config(config, p)
