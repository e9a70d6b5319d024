"""kgqa.resolver: the entity resolver's scorers (relation_match against the dense product, the
entity scorer, the second branch's span distribution), on the inputs kgqa.link_batch makes."""
import torch

from kgqa import KnowledgeBase
from kgqa.entity_facts import EntityFacts
from kgqa.link_batch import collate
from kgqa.resolver import EntityResolver, relation_match


def test_relation_match_is_the_dense_profile_product(fake_links):
    """The sparse per-entity relations give what a dense [E, R] table of "entity e has a fact of
    relation r" gives, asks times table summed over relations; gradients reach asks."""
    # Two films named Heat: a span with two candidates, whose facts use different relations.
    names = ["Heat", "Heat", "Michael Mann", "Al Pacino", "1995", "Ali", "Will Smith"]
    triples = torch.tensor([[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 2, 4], [5, 0, 2], [5, 1, 6]])
    kb = KnowledgeBase(names, ["directed_by", "starred_actors", "release_year"], triples)
    texts = ["who directed Heat and Ali", "nothing here names anything", "what did Michael Mann direct",
             "Al Pacino in Heat"]
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, texts), facts)
    assert lb.entity.shape[2] == 2 and lb.entity_valid.sum() == 7
    profile = torch.zeros(kb.num_entities, kb.num_relations, dtype=torch.float64)
    nrel = len(kb.base_relations)
    for s, p, o in kb.triples.tolist():
        profile[s, p] = profile[o, p + nrel] = 1.0
    assert int(profile.sum()) == len(facts.rel_ids)
    asks = torch.randn(*lb.masked.shape[:2], kb.num_relations, dtype=torch.float64, requires_grad=True)
    got = relation_match(asks, lb)
    expect = (profile[lb.entity] * asks.unsqueeze(2)).sum(-1) * lb.entity_valid
    torch.testing.assert_close(got, expect)
    got.sum().backward()
    torch.testing.assert_close(asks.grad, (profile[lb.entity] * lb.entity_valid.unsqueeze(-1)).sum(2))


def test_entity_scorer_ranks_candidates_of_one_span(fake_links):
    # "Heat" names two entities; the facts of one are about films, the other's about people.
    triples = torch.tensor([[0, 0, 2], [1, 1, 3], [4, 0, 5]])
    kb = KnowledgeBase(["Heat", "heat", "x", "y", "Solaris", "z"], ["directed_by", "born_in"], triples)
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, ["who directed heat"]), facts)
    assert [len(m.entities) for m in lb.inputs[0].mentions] == [2]
    resolver = EntityResolver(8, kb.num_relations)
    opt = torch.optim.Adam(resolver.parameters(), lr=0.05)
    for _ in range(50):  # push P(entity 0 | span) up: the neighbourhood term can tell them apart
        res = resolver(lb, facts)
        loss = -torch.log(res.entity[0, 0, lb.entity[0, 0].tolist().index(0)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert resolver(lb, facts).entity[0, 0, lb.entity[0, 0].tolist().index(0)] > 0.9


def test_the_second_branch_avoids_the_first(demo, fake_links):
    kb = demo[0]
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, ["what films did Grace Brandt and Jonas Quint act in together",
                                 "who directed The Golden Storm"]), facts)
    spans = lb.inputs[0].mentions
    assert {s.text for s in spans} >= {"Grace Brandt", "Jonas Quint"}
    resolver = EntityResolver(8, kb.num_relations)
    with torch.no_grad():  # make the first branch sure of "Grace Brandt"
        resolver.span_scorer[2].bias.zero_()
        resolver.span_scorer[2].weight.zero_()
        lb.span_features[0, [j for j, s in enumerate(spans) if s.text == "Grace Brandt"], 5] = 100.0
        resolver.span_scorer[0].weight.zero_()
        resolver.span_scorer[0].weight[0, -1] = 1.0
        resolver.span_scorer[2].weight[0, 0] = 50.0
    with torch.no_grad():  # only the values are checked
        res = resolver(lb, facts)
    grace = [j for j, s in enumerate(spans) if s.text == "Grace Brandt"][0]
    assert res.span[0, grace] > 0.99
    covered = [j for j, s in enumerate(spans) if s.start < spans[grace].end and spans[grace].start < s.end]
    # P2 never picks what the first branch's best span covers.
    assert res.second[0, covered].sum() == 0 and abs(float(res.second[0].sum()) - 1) < 1e-5
    free = [j for j in range(len(spans)) if j not in covered]
    assert "Jonas Quint" in [spans[j].text for j in free]
    torch.testing.assert_close(res.second[0, free], torch.full((len(free),), 1 / len(free)))  # its logits are all 0
    assert len(lb.inputs[1].mentions) == 1 and res.second[1].sum() == 0  # one span: no second entity

