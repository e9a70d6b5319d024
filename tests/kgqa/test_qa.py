"""kgqa.qa: a QA with learned entities answers the demo's questions and links their entities (the
brackets only score the linking)."""
from kgqa.decoding import branch_links
from kgqa.qa import QA


def _branch_entities(out, b):
    """The best entity of each branch's best span (the second only if P2 has a span)."""
    return [link.entity for link in branch_links(out.resolution, out.links[b].mentions, b)]


def test_learned_entities_answer_and_link_the_demo(learned_model):
    d, kb, test = learned_model
    qa = QA.load(d / "model", kb)
    assert qa.cfg.entities == "learned" and qa.model.resolver is not None
    # The brackets are stripped before the model sees a question; they only score the linking.
    result = qa.evaluate(test)
    assert result["hits@1"] >= 0.9, result
    one = [q for q in test if len(q.topics) == 1]
    assert qa.evaluate(one)["linking_accuracy"] >= 0.9
    two = [q for q in test if len(q.topics) == 2]
    _, out = qa.predict(two)
    both = sum(sorted(_branch_entities(out, b)) == sorted(q.topics) for b, q in enumerate(two))
    assert both >= 0.85 * len(two), (both, len(two))  # the two branches hold the two entities

