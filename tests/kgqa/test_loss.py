"""kgqa.loss: the training objective. Here the gate of learned entities with intersection,
P(two entities), which learns from which path's answer set is better."""
import torch

from kgqa.loss import training_loss
from kgqa.model import Output
from kgqa.resolver import Resolution

E = 5
ANSWERS = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.float64)


def gate_gradient(alone: torch.Tensor, pair: torch.Tensor, p: float) -> torch.Tensor:
    """d training_loss / d P(two entities) per question, P = ``p`` for each."""
    two = torch.full((alone.shape[0], 1), p, dtype=torch.float64, requires_grad=True)
    res = Resolution(span=None, second=None, entity=None, two=two)
    out = Output(scores=(1 - two) * alone + two * pair, relations=None, hop_attention=None, resolution=res,
                 parts=(alone, pair))
    training_loss(out, ANSWERS).backward()
    return two.grad.view(-1)


def test_the_gate_rises_where_the_pair_is_better_and_falls_where_the_first_branch_alone_is():
    right, wrong = torch.eye(E, dtype=torch.float64)[[1, 2, 3]], torch.eye(E, dtype=torch.float64)[[4, 4, 4]]
    # question 0: the pair right, the first branch alone wrong; 1: the other way round; 2: both right
    alone = torch.stack([wrong[0], right[1], right[2]])
    pair = torch.stack([right[0], wrong[1], right[2]])
    for p in (0.2, 0.5, 0.8):
        g = gate_gradient(alone, pair, p)
        assert g[0] < 0 < g[1]  # gradient descent raises P on question 0, lowers it on question 1


def test_a_tie_teaches_the_gate_nothing():
    """Both paths equally good (both answer sets right, or both wrong): no target, so no gradient
    to the gate. A target of 0.5 there kept P(two entities) in the middle on questions of two
    entities (docs/results.md "Learned entities restricted where gold ones are")."""
    right, wrong = torch.eye(E, dtype=torch.float64)[[1, 2, 3]], torch.eye(E, dtype=torch.float64)[[4, 4, 4]]
    alone, pair = torch.stack([right[0], wrong[1], right[2]]), torch.stack([right[0], wrong[1], wrong[2]])
    for p in (0.2, 0.8):  # (a target of 0.5 has no gradient at P = 0.5 either)
        g = gate_gradient(alone, pair, p)
        assert g[0] == 0 and g[1] == 0
        assert g[2] > 0  # the one question whose paths differ still teaches it


def test_the_gate_reads_where_a_path_puts_its_mass_not_how_high_its_scores_are():
    """A learned pair meets by the min of two soft paths, so its scores stay low: it is better where
    its mass is on the answers, whatever their level; a path that reaches nothing is worse than
    any other."""
    answers = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 0, 0]], dtype=torch.float64)
    # question 0: the pair low but only on the two answers, the first branch high on them and on
    # another (the answer sets' F1 at F1_THRESHOLD, the label before, called the first branch better)
    alone = torch.tensor([[0, 1.0, 1.0, 1.0, 0], [0, 0, 1.0, 0, 0]], dtype=torch.float64)
    pair = torch.tensor([[0, 0.2, 0.2, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float64)  # 1: the pair reaches nothing
    two = torch.full((2, 1), 0.5, dtype=torch.float64, requires_grad=True)
    out = Output(scores=(1 - two) * alone + two * pair, relations=None, hop_attention=None,
                 resolution=Resolution(span=None, second=None, entity=None, two=two), parts=(alone, pair))
    training_loss(out, answers).backward()
    g = two.grad.view(-1)
    assert g[0] < 0 < g[1]
