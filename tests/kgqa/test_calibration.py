"""kgqa.calibration: the answer sets and abstentions a Calibration selects."""
import torch

from kgqa.calibration import Calibration

INF = float("inf")
SCORES = torch.tensor([[0.9, 0.6, 0.2, -INF], [0.3, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, -INF]])


def test_default_rule_is_the_old_f1_set():
    # at least 0.5, else the top one; a row nothing reaches (all 0 or excluded) abstains
    assert Calibration().select(SCORES) == [[0, 1], [0], []]


def test_thresholds_pick_and_abstain():
    assert Calibration(answer_threshold=0.15, abstain_below=0.35).select(SCORES) == [[0, 1, 2], [], []]


def test_round_trip():
    c = Calibration(0.25, 0.1)
    assert Calibration.from_dict(c.to_dict()) == c
