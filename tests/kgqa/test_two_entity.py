"""kgqa.two_entity: the 2-entity question generator's answers are intersections."""
import pytest

from kgqa import two_entity


def test_two_entity_generator_answers_are_intersections(demo):
    kb, _, _ = demo
    qs = two_entity.generate(kb, 50, seed=1)
    assert len(qs) == 50
    facts = {tuple(t) for t in kb.triples.tolist()}
    for q in qs:
        a, b = q.topics
        assert q.text.count("[") == 2
        ra, rb = (kb.base_relations.index(x) for x in q.qtype.split(":")[1].split("+"))
        expect = {s for (s, p, o) in facts if p == ra and o == a} & {s for (s, p, o) in facts if p == rb and o == b}
        assert set(q.answers) == expect and expect


def test_two_entity_generator_two_hop_branches(demo):
    """Each branch goes back from its topic over its relation, then forward over the shared last
    relation; the answers are what both branches reach, topics excluded, and fewer than A's alone."""
    kb, _, _ = demo
    qs = two_entity.generate(kb, 40, seed=1, hops=2)
    assert len(qs) == 40 and len({q.qtype.split(">")[1] for q in qs}) > 1
    facts = {tuple(t) for t in kb.triples.tolist()}
    rel = kb.base_relations.index

    def branch(topic, relation, last):
        subjects = {s for (s, p, o) in facts if p == rel(relation) and o == topic}
        return {o for (s, p, o) in facts if p == rel(last) and s in subjects}

    for q in qs:
        a, b = q.topics
        pair, last = q.qtype.split(":")[1].split(">")
        ra, rb = pair.split("+")
        from_a = branch(a, ra, last) - {a, b}
        expect = from_a & branch(b, rb, last)
        assert set(q.answers) == expect and expect and expect != from_a
        assert q.text.count("[") == 2
    with pytest.raises(ValueError, match="hops"):
        two_entity.generate(kb, 5, hops=3)
