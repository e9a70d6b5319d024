"""kgqa.aliases: the alias index's exact, normalised and fuzzy lookups."""


def test_alias_index_exact_normalised_and_fuzzy():
    from kgqa.aliases import AliasIndex, normalise

    names = ["Amélie", "The Matrix", "The Matrix Reloaded", "Matrix", "Tom Hanks", "Tom Hanks", "Heat"]
    index = AliasIndex(names)
    assert normalise("  AMÉLIE!! ") == "amelie" and normalise("Spider-Man: Homecoming") == "spider man homecoming"
    exact = index.lookup("Tom Hanks")
    assert [c.entity for c in exact[:2]] == [4, 5] and exact[0].how == "exact"  # same name, two entities
    assert index.lookup("amelie")[0].entity == 0 and index.lookup("amelie")[0].how == "normalised"
    fuzzy = index.lookup("the matrx reloaded")
    assert fuzzy[0].entity == 2 and fuzzy[0].how == "fuzzy" and fuzzy[0].score < 0.99
    assert all(a.score >= b.score for a, b in zip(fuzzy, fuzzy[1:]))
    assert len(index.lookup("matrix", limit=2)) == 2
    assert index.lookup("zzzzqqq") == [] and index.lookup("") == []


def test_similarity_any_order_forgives_the_word_order_only():
    from kgqa.aliases import similarity, similarity_any_order

    assert similarity("hanks tom", "tom hanks") < 0.6 and similarity_any_order("hanks tom", "tom hanks") == 1.0
    assert similarity_any_order("hanks", "tom hanks") == similarity("hanks", "tom hanks") < 1.0  # a word missing
    assert similarity_any_order("matrx the", "the matrix") == similarity("the matrx", "the matrix")
    for a, b in (("heat", "heat"), ("tom hanks", "colin hanks"), ("", "heat")):
        assert similarity_any_order(a, b) >= similarity(a, b)


def test_alias_index_on_the_demo_kb(demo):
    from kgqa.aliases import AliasIndex

    kb, _, _ = demo
    index = AliasIndex(kb.entities)
    for i in range(0, kb.num_entities, 37):
        assert index.lookup(kb.entities[i])[0].entity == i
        assert i in [c.entity for c in index.lookup(kb.entities[i].lower()[:-1], limit=5)]  # a typo at the end

