"""kgqa.decoding: the learned seed is the span and entity mixture (and the model trains through
it); the linked entities are candidates of the question's spans."""
import torch

from kgqa import RigelModel
from kgqa.decoding import seed
from kgqa.entity_facts import EntityFacts
from kgqa.link_batch import collate


def test_learned_seed_is_the_span_and_entity_mixture_and_takes_gradients(demo, fake_links):
    kb = demo[0]
    texts = ["who directed The Golden Storm", "what films did Grace Brandt and Jonas Quint act in together",
             "nothing here names anything", "which films star Dmitri Ivanova"]
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, texts), facts)
    model = RigelModel(8, kb.num_relations, hops=2, entities="learned")
    res = model.resolver(lb, facts)
    x0 = seed(lb, res.span.unsqueeze(-1) * res.entity, kb.num_entities)
    expect = torch.zeros_like(x0)
    for b, x in enumerate(lb.inputs):
        for j, m in enumerate(x.mentions):
            for c, e in enumerate(m.entities):
                expect[b, e] += res.span[b, j] * res.entity[b, j, c]
    torch.testing.assert_close(x0, expect)
    sums = res.span.sum(1)
    torch.testing.assert_close(sums, torch.tensor([1.0, 1.0, 0.0, 1.0]))  # no span: no seed, not NaN

    out = model.forward_learned(lb, facts, kb.sparse)
    assert torch.isfinite(out.scores).all() and out.scores[2].abs().sum() == 0 and out.topics[2] == []
    assert out.scores.min() >= 0 and out.scores.max() <= 1 + 1e-6
    out.scores[[0, 1, 3]].sum().backward()
    r = model.resolver
    for name, p in [("span", r.span_scorer[0].weight), ("count", r.count_head[0].weight), ("hops", model.relation_head.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Each demo name matches exactly one entity, so P(entity | span) is 1 and the entity scorer has
    # nothing to learn here; it does get gradients where a span has several candidates.
    for b in (0, 1, 3):  # linked entities are candidates of the question's spans (the model is untrained)
        found = {e for m in lb.inputs[b].mentions for e in m.entities}
        assert 1 <= len(out.topics[b]) <= 2 and set(out.topics[b]) <= found


def test_branch_links_name_the_linked_entities(demo, fake_links):
    """What `kgqa ask` shows per branch (branch_links) is what the model links (predicted_topics),
    with the probabilities of the best span and entity."""
    from kgqa.decoding import branch_links, predicted_topics
    from kgqa.resolver import Resolution

    kb = demo[0]
    texts = ["who directed The Golden Storm", "what films did Grace Brandt and Jonas Quint act in together",
             "nothing here names anything"]
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, texts), facts)
    model = RigelModel(8, kb.num_relations, hops=2, entities="learned")
    with torch.no_grad():
        res = model.resolver(lb, facts)
    res = Resolution(res.span, res.second, res.entity, torch.ones_like(res.two))  # sure of two entities
    linked = predicted_topics(lb, res, intersection=True).tolist()
    for b, x in enumerate(lb.inputs):
        links = branch_links(res, x.mentions, b)
        assert [link.entity for link in links] == [e for e in linked[b] if e >= 0]
        for link, p in zip(links, (res.span[b], res.second[b])):
            assert link.span_p == float(p.max()) and link.mention in x.mentions
            assert link.entity in link.mention.entities and 0 < link.entity_p <= 1
        assert len(branch_links(res, x.mentions, b, branches=1)) == min(1, len(links))
    assert linked[2] == [-1, -1] and branch_links(res, lb.inputs[2].mentions, 2) == []
