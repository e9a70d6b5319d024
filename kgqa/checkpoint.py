"""Checkpoints: what ``kgqa train --out DIR`` writes and ``kgqa eval/ask --model DIR`` reads. No
pickle and no code: the weights in ``model.safetensors`` (CPU tensors, so a checkpoint loads on
any device), everything else in ``config.json``, and perhaps a copy of the KB in ``kb.txt``.

model.safetensors:
    "model.<name>"    every tensor of the RigelModel's state dict
    "encoder.<name>"  the encoder's, only when it trains (scratch, or --finetune-encoder); a frozen
                      transformers encoder is loaded by name instead

config.json (one object; its schema, with every key's type and bounds, is
``kgqa.checkpoint_schema``):
    "train"    the TrainConfig, field by field
    "model"    RigelModel's constructor arguments (``RigelModel.dims``)
    "encoder"  the encoder's ``config()``: {"kind": "scratch", "vocab", "dim"} or
               {"kind": "transformers", "name", "finetune"}
    "kb"       {"path": the KB file trained on, relative to the model directory (absolute in older
               checkpoints), or null; "absolute": the same, absolute, as it was when saved; "copy":
               "kb.txt" when the directory carries the KB, else null; "relations": its relations with
               the inverses, which a KB loaded for the model must include (by name); "num_entities":
               a record}
    "calibration"  what the model answers with (``kgqa.calibration.Calibration.to_dict()``); optional:
               a checkpoint without it answers by the default rule
    "retrieval"  learned entities with ``train.retrieval`` "policy" only: the candidate policy's
               state (``kgqa.retrieval_policy.CandidatePolicy.state_dict()``: the bandit's ridge
               regressions and the memory generator's pairs, plain numbers and strings)
    ...        whatever the caller adds (``extra``): `kgqa train` adds "valid" (the metrics),
               "train_minutes", "world_size" and "device"

kb.txt (when "copy" names it): the KB trained on, tab-separated (``KnowledgeBase.write``), written
for a KB of at most COPY_KB_MAX_FACTS facts or as ``save(copy_kb=...)`` says.

Which KB a model answers over: the one the caller passes, else the first that exists of "path"
(relative to the model directory: a model directory moved together with its KB keeps finding it),
"absolute" (the model directory moved alone), and the carried copy (the KB moved or gone). A KB
that grew since training serves the model (``check_kb``): nothing in the model is per entity, and
its per-relation parameters are matched to the KB's relations by name (``kgqa.relation_map``).

Guarantees. ``save`` writes the whole directory under a temporary name beside it and renames it
into place: a failed write (a full disk) leaves the previous checkpoint, or none, never a mix; it
refuses to replace a directory that holds anything but a checkpoint's files, and to write a
config that ``load`` would refuse. ``load`` checks config.json against the schema, then the
weights' names, dtypes and shapes against the model that config describes (from the file's
header, before anything is allocated), then every value (finite); an encoder named by a checkpoint
is loaded from local files only (``kgqa.encoder.local_model_path``). Every failure is a
CheckpointError (a ValueError) naming the file and the key or tensor.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .calibration import Calibration
from .checkpoint_schema import KB_COPY, OPTIONAL_SECTIONS, SECTIONS, CheckpointError, check_config, read_config
from .config import COPY_KB_MAX_FACTS, IDS, NAMES, TrainConfig
from .encoder import SCRATCH, encoder_from_config, local_model_path
from .kb import INVERSE_SUFFIX, KnowledgeBase
from .model import RigelModel
from .qa import QA
from .relation_map import new_relations, relation_map

__all__ = ["CheckpointError", "KBWarning", "save", "load", "make_config", "check_destination", "check_kb",
           "relation_map", "train_config", "WEIGHTS", "CONFIG", "KB_COPY", "COPY_KB_MAX_FACTS"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FILES = (WEIGHTS, CONFIG, KB_COPY)  # everything a checkpoint directory may hold
MODEL_PREFIX = "model."
ENCODER_PREFIX = "encoder."
# safetensors' names of the dtypes a module's state dict holds.
_DTYPE_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}


class KBWarning(UserWarning):
    """The KB a model is loaded over has relations it was not trained on (``check_kb``)."""


def _kb_paths(kb_path: Optional[str], model_dir) -> dict:
    """config.json's "path" and "absolute" for the KB file ``kb_path`` and the model directory."""
    if kb_path is None:
        return {"path": None, "absolute": None}
    absolute = str(Path(kb_path).resolve())
    if model_dir is None:
        return {"path": absolute, "absolute": absolute}
    try:
        # From the directory the model is loaded from: a link to it is followed, as load() does.
        relative = os.path.relpath(absolute, Path(model_dir).resolve())
    except ValueError:  # Windows: another drive, which no relative path reaches
        relative = absolute
    return {"path": relative, "absolute": absolute}


def make_config(qa: QA, kb_path: Optional[str], extra: Optional[dict] = None, model_dir=None,
                copied: bool = False) -> dict:
    """config.json's object for ``qa`` (see the module's docstring): the KB file ``kb_path``
    recorded relative to ``model_dir`` (absolute without one), ``copied`` whether the directory
    carries a copy of the KB."""
    clash = sorted(set(extra or {}) & set(SECTIONS + OPTIONAL_SECTIONS))
    if clash:
        raise ValueError(f"checkpoint: extra may not replace config.json's {clash[0]!r}")
    config = {"train": asdict(qa.cfg), "model": qa.model.dims, "encoder": qa.encoder.config(),
              "kb": {**_kb_paths(kb_path, model_dir), "copy": KB_COPY if copied else None,
                     "relations": qa.kb.relations, "num_entities": qa.kb.num_entities},
              "calibration": qa.calibration.to_dict()}
    if qa.links.policy is not None:
        config["retrieval"] = qa.links.policy.state_dict()
    config.update(extra or {})
    return config


def check_kb(config: dict, kb: KnowledgeBase, where) -> Optional[torch.Tensor]:
    """The model's relations matched to ``kb``'s by name (``relation_map``): None when they are the
    same in the same order, else the map that ``RigelModel.remap_relations`` applies. A KB may hold
    more entities, facts and relations than the model was trained on, or fewer entities: nothing
    in the model is per entity. Relations the model was not trained on get one KBWarning (an ids
    head never follows them, a names head scores them by their names). CheckpointError naming the
    trained relations the KB lacks: the one thing the model cannot do without."""
    try:
        mapping = relation_map(config["kb"]["relations"], kb.relations)
    except ValueError as e:
        raise CheckpointError(f"{where}: kb.relations: {e} (pass the KB it was trained on, --kb)") from None
    new = [r for r in new_relations(mapping, kb.relations) if not r.endswith(INVERSE_SUFFIX)]
    if new:
        # What the model does with them is its relation head's (RigelModel.remap_relations)
        names_head = config["model"].get("relation_head", IDS) == NAMES
        does = ("which it scores by their names alone (train again to learn them)" if names_head
                else "which it never follows (train again to use them)")
        warnings.warn(f"{where}: the KB has {len(new)} relation{'s' if len(new) > 1 else ''} the model was not trained "
                      f"on, {does}: {', '.join(map(repr, new[:10]))}"
                      f"{' ...' if len(new) > 10 else ''}", KBWarning, stacklevel=4)
    return mapping


def train_config(config: dict) -> TrainConfig:
    """The TrainConfig of a checked config.json (``kgqa.checkpoint_schema.check_config``)."""
    return TrainConfig(**config["train"])


# ---- writing ------------------------------------------------------------------------------------

def _carries_kb(d: Path) -> bool:
    """Whether ``d``/config.json says that ``d``/kb.txt is the copy ``save`` wrote (and not, say,
    the user's KB, kept in the model directory: a save replaces the whole directory)."""
    try:
        return json.loads((d / CONFIG).read_text(encoding="utf-8"))["kb"]["copy"] == KB_COPY
    except (OSError, ValueError, KeyError, TypeError):
        return False


def check_destination(out_dir) -> None:
    """CheckpointError unless ``save`` may write ``out_dir``: new, or a directory holding only a
    checkpoint's files (a checkpoint replaces its whole directory, so nothing else there may be
    lost; a kb.txt only when its config.json says it carries it). Cheap: callers check before a
    long training run."""
    out = Path(out_dir)
    if not out.exists():
        if os.path.lexists(out):
            raise CheckpointError(f"{out}: a broken symbolic link; not replaced")
        return
    if not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a directory; not replaced")
    ours = set(FILES) if _carries_kb(out) else set(FILES) - {KB_COPY}
    others = sorted(set(os.listdir(out)) - ours)
    if others:
        raise CheckpointError(f"{out}: holds {others[0]!r}, which is not a checkpoint's file; a checkpoint replaces "
                              f"its whole directory, so write it to a new or empty one")


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_weights(tensors: Dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path))
    _fsync(path)


def _write_kb(kb: KnowledgeBase, path: Path) -> None:
    # From memory, not a copy of the file: what the model was trained on, whatever became of the file.
    kb.write(path)
    _fsync(path)


def _write_config(text: str, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _replace(tmp: Path, out: Path, given) -> None:
    """``tmp`` renamed to ``out``; an existing ``out`` is moved aside first, and back if that fails."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError as e:
        try:
            os.rename(old, out)
        except OSError:
            raise CheckpointError(f"{given}: cannot write the checkpoint ({e.strerror or e}); the one that was "
                                  f"there is now {old}") from None
        raise
    shutil.rmtree(old, ignore_errors=True)


def save(qa: QA, out_dir, kb_path: Optional[str], extra: Optional[dict] = None,
         copy_kb: Optional[bool] = None) -> None:
    """Writes ``out_dir``/model.safetensors and config.json, the directory as a whole (see the
    module's docstring); ``kb_path``: the KB file ``qa`` was trained on (recorded relative to
    ``out_dir``; None: none); ``extra``: more keys for config.json; ``copy_kb``: whether to carry
    ``qa.kb`` in ``out_dir``/kb.txt (default: when it has at most COPY_KB_MAX_FACTS facts).
    CheckpointError naming ``out_dir`` if it cannot be written."""
    given = Path(out_dir)
    out = given.resolve() if given.is_symlink() else given  # a link keeps pointing where it did
    copied = len(qa.kb.triples) <= COPY_KB_MAX_FACTS if copy_kb is None else bool(copy_kb)
    config = make_config(qa, kb_path, extra, out, copied)
    check_config(config, given / CONFIG)  # what load would refuse is never written
    text = json.dumps(config, indent=1)
    check_destination(out)
    state = {f"{MODEL_PREFIX}{k}": v for k, v in qa.model.state_dict().items()}
    if not qa.encoder.frozen:
        state.update({f"{ENCODER_PREFIX}{k}": v for k, v in qa.encoder.state_dict().items()})
    # From the CPU, whatever device trained it: the file loads anywhere (load(device=...)).
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    existed = out.exists()
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        _write_weights(tensors, tmp / WEIGHTS)
        if copied:
            _write_kb(qa.kb, tmp / KB_COPY)
        _write_config(text, tmp / CONFIG)
        _fsync(tmp)
        _replace(tmp, out, given)
        tmp = None
    except OSError as e:
        kept = "the checkpoint that was there is unchanged" if existed else "nothing was written"
        raise CheckpointError(f"{given}: cannot write the checkpoint ({e.strerror or e}); {kept}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        _fsync(out.parent)  # the rename itself reaches the disk
    except OSError:
        pass  # some file systems cannot sync a directory; the checkpoint is in place either way


# ---- reading ------------------------------------------------------------------------------------

def _check_header(header: dict, expected: Dict[str, torch.Tensor], where) -> None:
    """The file's tensors named in ``expected`` have its dtypes and shapes (from the header: no
    tensor is read)."""
    for key, t in expected.items():
        if key not in header:
            raise CheckpointError(f"{where}: tensor {key!r} is missing")
        dtype, shape = header[key]
        if dtype != _DTYPE_NAMES.get(t.dtype):
            raise CheckpointError(f"{where}: tensor {key!r} is {dtype}, expected {_DTYPE_NAMES.get(t.dtype, t.dtype)}")
        if list(shape) != list(t.shape):
            raise CheckpointError(f"{where}: tensor {key!r} has shape {list(shape)}, expected {list(t.shape)} "
                                  f"(from config.json)")


def _read_tensors(f, keys, where) -> Dict[str, torch.Tensor]:
    out = {}
    for key in keys:
        t = f.get_tensor(key)
        if t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise CheckpointError(f"{where}: tensor {key!r} holds {bad} NaN or infinite values")
        out[key] = t
    return out


def _prefixed(module, prefix: str) -> Dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


def kb_candidates(config: dict, model_dir) -> list:
    """The files a checkpoint's KB may be read from, in the order ``load`` tries them (see the
    module's docstring): "path" from the model directory, "absolute", the carried copy."""
    base = Path(model_dir).resolve()  # links resolved: ".." below then means what it says
    kb = config["kb"]
    out = [Path(os.path.normpath(base / kb["path"]))] if kb["path"] is not None else []  # absolute: itself
    if kb.get("absolute") is not None:
        out.append(Path(kb["absolute"]))
    if kb.get("copy") is not None:
        out.append(base / kb["copy"])
    return list(dict.fromkeys(out))


def _load_kb(config: dict, kb: Optional[KnowledgeBase], model_dir, where):
    """(the KB, the relation map ``check_kb`` gives for it)."""
    if kb is None:
        tried = kb_candidates(config, model_dir)
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            at = f" at {' or '.join(map(str, tried))}" if tried else " (none was recorded)"
            raise CheckpointError(f"{where}: kb.path: the KB the model was trained on is not{at}; pass the KB (--kb)")
        kb = KnowledgeBase.load(found)
    return kb, check_kb(config, kb, where)


def _encoder_error(e: Exception, where, context: str = "") -> CheckpointError:
    """One line naming encoder.name, from whatever was raised (the first line of its message)."""
    why = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    return CheckpointError(f"{where}: encoder.name: {context}{why}")


def _transformers_encoder(config: dict, where):
    """The checkpoint's transformers encoder, from local files only; CheckpointError naming
    encoder.name, whatever transformers raises for what it names."""
    name = config["encoder"]["name"]
    try:
        return encoder_from_config(config["encoder"])
    except Exception as e:  # noqa: BLE001 (a one-line error naming the key, whatever the library raised)
        raise _encoder_error(e, where, f"cannot load {name!r} from local files: ") from None


def _check_width(config: dict, encoder, where) -> None:
    if encoder.out_dim != config["model"]["enc_dim"]:
        raise CheckpointError(f"{where}: model.enc_dim: {config['model']['enc_dim']}, but the encoder's vectors are "
                              f"{encoder.out_dim} wide")


def load(model_dir, kb: Optional[KnowledgeBase] = None, device="cpu") -> QA:
    """The model of ``kgqa train --out model_dir`` on ``device`` (any: checkpoints hold CPU
    tensors), over ``kb`` or else the KB it was trained on (found as the module's docstring says);
    a KB that gained entities, facts or relations serves it too (``check_kb``). ``QA.config``
    holds config.json.
    CheckpointError naming the file and the key or tensor for a checkpoint that does not hold
    what config.json describes (see the module's docstring)."""
    d = Path(model_dir)
    if not d.is_dir():
        raise CheckpointError(f"{d}: no such directory (the --out of `kgqa train`)")
    cfg_path, weights = d / CONFIG, d / WEIGHTS
    config = read_config(cfg_path)
    cfg = train_config(config)
    scratch = config["encoder"]["kind"] == SCRATCH
    if not scratch:  # before anything else: an encoder that is not here fails first, and fast
        try:
            local_model_path(config["encoder"]["name"])
        except (ValueError, ImportError) as e:
            raise _encoder_error(e, cfg_path) from None
    try:
        f = safe_open(str(weights), framework="pt", device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: no such file") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    with f:
        header = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}
        # The modules on the meta device: their tensors' dtypes and shapes, nothing allocated.
        with torch.device("meta"):
            model = RigelModel(**config["model"])
            encoder = encoder_from_config(config["encoder"]) if scratch else None
        expected = _prefixed(model, MODEL_PREFIX)
        if scratch:
            _check_width(config, encoder, cfg_path)
            expected.update(_prefixed(encoder, ENCODER_PREFIX))
        # A fine-tuned transformers encoder's tensors are known once it is loaded (below).
        later = not scratch and config["encoder"]["finetune"]
        for key in header:
            if key not in expected and not (later and key.startswith(ENCODER_PREFIX)):
                raise CheckpointError(f"{weights}: tensor {key!r} is not part of the model config.json describes")
        _check_header(header, expected, weights)
        kb, relations = _load_kb(config, kb, d, cfg_path)
        if not scratch:
            encoder = _transformers_encoder(config, cfg_path)  # real weights: its own local files
            _check_width(config, encoder, cfg_path)
            if not encoder.frozen:
                own = _prefixed(encoder, ENCODER_PREFIX)
                _check_header(header, own, weights)
                extra = sorted(k for k in header if k.startswith(ENCODER_PREFIX) and k not in own)
                if extra:
                    raise CheckpointError(f"{weights}: tensor {extra[0]!r} is not part of the encoder "
                                          f"{config['encoder']['name']!r}")
        # Every name, dtype and shape matched: what is allocated now is what the file holds.
        state = _read_tensors(f, header, weights)
    # The tensors read become the modules' own (assign): nothing is allocated twice, and the meta
    # modules need no to_empty, whose empty_like imports sympy (half a second of every `kgqa ask`).
    model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)},
                          assign=True)
    if not encoder.frozen:  # a scratch encoder is on the meta device; a fine-tuned transformers one is real
        encoder.load_state_dict({k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)},
                                assign=scratch)
    if relations is not None:  # the KB's relations are not the trained ones in their order
        model.remap_relations(relations)
    qa = QA(kb, encoder, model, cfg, device)
    qa.config = config
    qa.calibration = Calibration.from_dict(config.get("calibration", {}))
    if "retrieval" in config:
        from .retrieval_policy import for_qa  # the generators' libraries only for a model that uses them

        try:
            qa.links.policy = for_qa(qa, config["retrieval"])
        except ValueError as e:
            raise CheckpointError(f"{cfg_path}: retrieval.{e}") from None
    return qa
