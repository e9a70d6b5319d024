"""kgqa.linking: candidate spans of plain questions hold their topic entities."""


def test_candidate_spans_find_the_topic_entities(demo):
    from kgqa.aliases import AliasIndex
    from kgqa.linking import candidate_spans, longest_match, strip_brackets

    kb, _, test_qs = demo
    assert strip_brackets("which movies starred [Ada Abbott] and were directed by [Ben Brandt]") == (
        "which movies starred Ada Abbott and were directed by Ben Brandt", ["Ada Abbott", "Ben Brandt"])
    index = AliasIndex(kb.entities)
    for q in test_qs[:100]:
        plain, names = strip_brackets(q.text)
        spans = candidate_spans(plain, index)
        found = {c.entity for s in spans for c in s.candidates}
        assert set(q.topics) <= found, q.text
        for s in spans:
            assert plain[s.start:s.end] == s.text
        if len(q.topics) == 1:
            assert longest_match(spans)[0] == q.topics[0], q.text
    assert candidate_spans("nothing here matches", index) == [] and longest_match([]) == []

