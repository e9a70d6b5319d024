"""kgqa.mentions: candidate spans of a plain question, with a fuzzy fallback for typos."""
from kgqa.aliases import AliasIndex
from kgqa.mentions import find_mentions


def test_find_mentions_falls_back_to_fuzzy_matches(demo):
    kb = demo[0]
    index = AliasIndex(kb.entities)
    ms = find_mentions("who directed the golden strom", index)  # a typo: only the fuzzy fallback finds it
    assert ms and kb.entity_ids["The Golden Storm"] in ms[0].entities and ms[0].how[0] == "fuzzy"
