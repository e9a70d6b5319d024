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



def test_name_kinds_have_features_of_their_own_and_count_as_fuzzy():
    """A candidate named "initials" or "words" (``--retrieval policy``) is a fuzzy match in the
    one-hot and in the span's "only fuzzy" feature, and has its own feature after the degree."""
    from kgqa.features import (DEGREE_FEATURE, ENTITY_FEATURES, MATCH_KINDS, NAME_KINDS, match_features,
                               span_features)
    from kgqa.mentions import Mention

    m = Mention(4, 8, "lotr", [3, 5, 7], ["initials", "words", "fuzzy"], [0.3, 0.6, 0.8])
    rows = match_features(m)
    assert all(len(r) == ENTITY_FEATURES for r in rows)
    fuzzy = MATCH_KINDS.index("fuzzy")
    assert [r[fuzzy] for r in rows] == [1.0, 1.0, 1.0] and [r[DEGREE_FEATURE] for r in rows] == [0.0] * 3
    at = DEGREE_FEATURE + 1
    assert [r[at : at + len(NAME_KINDS)] for r in rows] == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    assert [r[len(MATCH_KINDS)] for r in rows] == [0.3, 0.6, 0.8]
    assert span_features(m, "who directed lotr")[3] == 1.0  # only fuzzy matches


def test_a_resolver_from_before_the_name_kinds_reads_the_first_features(fake_links):
    import pytest

    from kgqa.features import ENTITY_FEATURES_BEFORE_NAME_KINDS

    triples = torch.tensor([[0, 0, 2], [1, 1, 3], [4, 0, 5]])
    kb = KnowledgeBase(["Heat", "heat", "x", "y", "Solaris", "z"], ["directed_by", "born_in"], triples)
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, ["who directed heat"]), facts)
    torch.manual_seed(0)
    old = EntityResolver(8, kb.num_relations, entity_features=ENTITY_FEATURES_BEFORE_NAME_KINDS)
    new = EntityResolver(8, kb.num_relations)
    new.load_state_dict({k: v for k, v in old.state_dict().items() if not k.startswith("match_scorer")}, strict=False)
    with torch.no_grad():
        new.match_scorer.weight.zero_()
        new.match_scorer.weight[:, :ENTITY_FEATURES_BEFORE_NAME_KINDS] = old.match_scorer.weight
        new.match_scorer.bias.copy_(old.match_scorer.bias)
        # With the new features 0, the new resolver is the old one; set, only the new one reads them.
        lb.entity_features[..., ENTITY_FEATURES_BEFORE_NAME_KINDS:] = 0.0
        torch.testing.assert_close(old(lb, facts).entity, new(lb, facts).entity)
        before = old(lb, facts).entity
        new.match_scorer.weight[:, ENTITY_FEATURES_BEFORE_NAME_KINDS:] = 5.0
        lb.entity_features[0, 0, 0, ENTITY_FEATURES_BEFORE_NAME_KINDS:] = 1.0
        torch.testing.assert_close(old(lb, facts).entity, before)
        assert new(lb, facts).entity[0, 0, 0] > before[0, 0, 0] + 0.1
    with pytest.raises(ValueError, match="entity_features"):
        EntityResolver(8, kb.num_relations, entity_features=6)
