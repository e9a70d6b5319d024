"""The dense generator: entity names embedded by the question encoder (``kgqa.encoder``), unit
length, searched by inner product (cosine) with faiss, so that a mention finds names that read
alike even with no word or trigram in common. The name vectors are computed once per (names,
encoder weights) and cached as a .npy file (no pickle) beside the KB cache (``kgqa.kb.cache_root``)."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .base import Generator, Hit, best_unique, check_k, check_mentions

CACHE_VERSION = "1"
ENCODE_BATCH = 512  # names per encoder call while embedding a KB's names
# Above this many names the index is approximate (IVF: the vectors in sqrt(N) k-means cells, a query
# scanning the NPROBE nearest cells); below, exact inner product over all of them. Measured on one
# thread (docs/results.md, "Candidate generators"): on MetaQA's 43,234 name vectors, exact 8.2 ms a
# mention, IVF 1.1 ms with the same recall (a noisy copy of a name finds it in the top 20: 1.000
# both); exact grows linearly (40 ms at 200k, 176 ms at 1M). IVF rather than HNSW: its build at 1M
# names is a k-means on a sample plus one assignment pass (71 s), not a graph.
APPROX_ABOVE = 20_000
NPROBE = 32
TRAIN_PER_CELL = 40  # k-means training vectors per cell (faiss warns below 39)
# Mention vectors kept (``DenseGenerator.queries``; all dropped when full): 1.5 kB each at the
# default encoder's 384 dimensions, so at most about 300 MB; 3,000 MetaQA questions have 28,827
# distinct n-grams of up to 4 words.
QUERY_CACHE = 200_000


def encode(encoder, texts: Sequence[str]) -> np.ndarray:
    """[len(texts), D] float32, each row of unit length (a zero vector stays zero)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), ENCODE_BATCH):
            out.append(encoder(list(texts[i : i + ENCODE_BATCH])).detach().float().cpu().numpy())
    vecs = np.concatenate(out) if out else np.zeros((0, encoder_dim(encoder)), dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12), dtype=np.float32)


def encoder_dim(encoder) -> int:
    return int(encoder.out_dim)


def encoder_key(encoder) -> Optional[str]:
    """A hash of what the encoder computes: its config and its weights (a trained scratch encoder
    embeds differently from a fresh one with the same config). None for an encoder without a
    config(): its vectors are not cached."""
    if not hasattr(encoder, "config"):
        return None
    h = hashlib.sha256(json.dumps(encoder.config(), sort_keys=True).encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def names_key(names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def cached_vectors(names: Sequence[str], encoder, cache_dir: Optional[str] = None) -> np.ndarray:
    """The names' unit vectors, from the cache when there, else encoded (and cached). A cache that
    cannot be read or written is skipped with one CacheWarning."""
    from ..kb import CacheWarning, cache_root

    ekey = encoder_key(encoder)
    root = cache_root(cache_dir) if ekey is not None else None
    path = None
    if root is not None:
        key = hashlib.sha1(f"{names_key(names)}|{ekey}|{CACHE_VERSION}".encode()).hexdigest()[:16]
        path = Path(root) / f"names-{key}.npy"
        try:
            vecs = np.load(path, allow_pickle=False)
            if vecs.shape == (len(names), encoder_dim(encoder)) and vecs.dtype == np.float32:
                return vecs
        except Exception:  # not there yet, truncated, or unreadable: encoded again
            pass
    vecs = encode(encoder, names)
    if path is not None:
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp, vecs, allow_pickle=False)
            os.replace(tmp, path)
        except Exception as err:
            tmp.unlink(missing_ok=True)
            warnings.warn(f"name-vector cache {path.parent} not used ({err}); the names are encoded each time: set "
                          f"KGQA_CACHE to a writable folder", CacheWarning, stacklevel=3)
    return vecs


def build_index(vecs: np.ndarray, approx_above: int = APPROX_ABOVE, nprobe: int = NPROBE, seed: int = 0):
    """A faiss inner-product index over unit vectors: exact up to ``approx_above`` vectors, IVF
    (sqrt(N) cells, fewer for fewer than 40 * sqrt(N) vectors; trained on a seeded sample) above."""
    import faiss

    n, d = vecs.shape
    if n > approx_above and n >= 2:
        cells = max(1, min(int(np.sqrt(n)), n // TRAIN_PER_CELL))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, size=min(n, TRAIN_PER_CELL * cells), replace=False)
        index.cp.seed = seed
        index.train(vecs[np.sort(sample)])
        index.nprobe = min(nprobe, cells)
    else:
        index = faiss.IndexFlatIP(d)
    if n:
        index.add(vecs)
    return index


class DenseGenerator(Generator):
    name = "dense"

    def __init__(self, encoder, vectors: np.ndarray, approx_above: int = APPROX_ABOVE):
        """``vectors``: the names' unit vectors [N, D] (``cached_vectors``), row i entity i."""
        self.encoder = encoder
        self.size = len(vectors)
        # Mention text -> its unit vector: the policy probes a span and then draws from it (two
        # searches), and questions share n-grams; the encoder is most of a search's time (64% of
        # --retrieval policy's input preparation, docs/results.md "End to end with --retrieval
        # policy"). The encoder is fixed, as the names' vectors assume (``cached_vectors``).
        self.queries: Dict[str, np.ndarray] = {}
        self.index = build_index(np.ascontiguousarray(vectors, dtype=np.float32), approx_above)

    @classmethod
    def build(cls, names: Sequence[str], encoder, cache_dir: Optional[str] = None,
              approx_above: int = APPROX_ABOVE) -> "DenseGenerator":
        return cls(encoder, cached_vectors(names, encoder, cache_dir), approx_above)

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores: the cosine of the mention's and the name's vectors. All mentions go through the
        encoder in one call."""
        check_k(k)
        mentions = check_mentions(mentions)
        if not k or not self.size or not len(mentions):
            return [[] for _ in mentions]
        todo = [m for m in dict.fromkeys(mentions) if m not in self.queries]
        if todo:
            if len(self.queries) + len(todo) > QUERY_CACHE:
                self.queries.clear()
            self.queries.update(zip(todo, encode(self.encoder, todo)))
        q = np.stack([self.queries[m] for m in mentions])
        scores, ids = self.index.search(q, min(k, self.size))
        return [best_unique(((e, s) for e, s in zip(row_ids.tolist(), row_s.tolist()) if e >= 0), k)
                for row_ids, row_s in zip(ids, scores)]
