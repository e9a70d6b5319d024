"""kgqa.questions: MetaQA question files, what is missing from the KB (or more topic entities than
a model takes) counted, malformed or undecodable lines named by file and line, byte-order marks,
and plain questions for learned entities."""
import pytest

from kgqa import KnowledgeBase, QuestionFormatError, read_questions


def test_question_reader_counts_what_is_missing(write, cache):
    kb = KnowledgeBase.load(write("kb.txt", "Paris, Texas|directed_by|Wim Wenders\nWings of Desire|directed_by|Wim Wenders\n"))
    qa = write("qa.txt",
               "what did [Wim Wenders] direct\tParis|Texas|Wings of Desire|Nowhere\n"
               "who directed [Unknown Film]\tWim Wenders\n"
               "who directed [Wings of Desire]\tSomebody Else\n")
    qtype = write("qtype.txt", "director_to_movie\nmovie_to_director\nmovie_to_director\n")
    qs, report = read_questions(qa, kb, qtype)
    assert len(qs) == 1 and report.missing_topic == 1 and report.no_answer_in_kb == 1
    assert report.joined_answers == 1 and report.missing_answers == 2
    q = qs[0]
    assert q.topics == [kb.entity_ids["Wim Wenders"]] and q.qtype == "director_to_movie"
    assert sorted(kb.entities[a] for a in q.answers) == ["Paris, Texas", "Wings of Desire"]
    assert q.masked == "what did NE direct"
    with pytest.raises(QuestionFormatError, match=r"bad.txt:2: expected 'question<TAB>"):
        read_questions(write("bad.txt", "who directed [Wings of Desire]\tWim Wenders\nno tab here\n"), kb)
    with pytest.raises(QuestionFormatError, match=r"nobracket.txt:1: no \[bracketed\] topic"):
        read_questions(write("nobracket.txt", "who directed it\tWim Wenders\n"), kb)


def test_read_questions_without_brackets_for_learned_entities(write, demo):
    kb = demo[0]
    path = write("plain.txt", "who directed The Golden Storm\tLuca Brandt\n")
    with pytest.raises(QuestionFormatError, match="no \\[bracketed\\]"):
        read_questions(path, kb)
    qs, _ = read_questions(path, kb, require_topics=False)
    assert len(qs) == 1 and qs[0].topics == []


def test_questions_with_more_topic_entities_than_the_model_takes_are_counted(write, cache):
    kb = KnowledgeBase.load(write("kb.txt", "Heat|starred_actors|Al Pacino\nHeat|starred_actors|Robert De Niro\n"
                                            "Heat|directed_by|Michael Mann\n"))
    qa = write("qa.txt", "which films star [Al Pacino] and [Robert De Niro] and were made by [Michael Mann]\tHeat\n"
                         "which films star [Al Pacino] and [Robert De Niro]\tHeat\n")
    qs, report = read_questions(qa, kb, max_topics=2)
    assert len(qs) == 1 and len(qs[0].topics) == 2 and report.too_many_topics == 1 and report.lines == 2
    assert "1 of 2 questions kept" in report.summary() and "1 with too many topic entities" in report.summary()
    qs, report = read_questions(qa, kb)  # no limit: one branch seeded with all of them, or learned entities
    assert len(qs) == 2 and report.too_many_topics == 0 and "too many" not in report.summary()


def test_question_files_drop_byte_order_marks_and_name_undecodable_lines(tmp_path, write, cache):
    kb = KnowledgeBase.load(write("kb.txt", "Heat|directed_by|Michael Mann\nAli|directed_by|Michael Mann\n"))
    qa = tmp_path / "qa.txt"
    qa.write_bytes(b"\xef\xbb\xbfwho directed [Heat]\tMichael Mann\r\nwho directed [Ali]\tMichael Mann\r\n")
    qtype = tmp_path / "qtype.txt"
    qtype.write_bytes(b"\xef\xbb\xbfmovie_to_director\r\nmovie_to_director\r\n")
    qs, report = read_questions(qa, kb, qtype)
    assert [q.text for q in qs] == ["who directed [Heat]", "who directed [Ali]"] and report.kept == 2
    assert [q.qtype for q in qs] == ["movie_to_director", "movie_to_director"]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"who directed [Heat]\tMichael Mann\nwho directed [Am\xe9lie]\tJeunet\n")
    with pytest.raises(QuestionFormatError, match=r"latin1\.txt:2: not UTF-8: byte 0xe9 at character 17"):
        read_questions(latin1, kb)
    with pytest.raises(QuestionFormatError, match=r"latin1\.txt:2: not UTF-8"):
        read_questions(qa, kb, latin1)  # a question-type file too
    with pytest.raises(FileNotFoundError, match="no question-type file"):
        read_questions(qa, kb, tmp_path / "missing.txt")


# ---- forgiving [bracketed] names when asking; exact ones in question files ------------------------

def test_a_bracketed_name_may_differ_in_case_or_by_typos_when_it_is_unambiguous(demo):
    from kgqa.questions import parse_question, resolve_topics

    kb = demo[0]
    harbor = kb.entity_ids["The Electric Harbor"]
    assert parse_question("what is the budget of [The Electric Harbor]", kb) == [harbor]
    (m,) = resolve_topics("who directed [the electric harbor]", kb)
    assert (m.entity, m.how, m.name) == (harbor, "normalised", "the electric harbor")
    (m,) = resolve_topics("who directed [The Electrik Harbour]", kb)
    assert (m.entity, m.how) == (harbor, "fuzzy") and 0.9 < m.similarity < 1
    with pytest.raises(KeyError, match=r"'The Electrik Harbour' is not in the KB$"):
        parse_question("who directed [The Electrik Harbour]", kb, forgiving=False)


def test_a_name_that_fits_several_entities_or_none_is_refused_with_suggestions(write, cache):
    from kgqa.questions import UnknownEntity, parse_question

    kb = KnowledgeBase.load(write("kb.txt", "Toy Story 2|directed_by|John Lasseter\n"
                                            "Toy Story 3|directed_by|Lee Unkrich\n"
                                            "Heat|genre|Crime\nHEAT|genre|Documentary\n"
                                            "Frank Liu|reports_to|Ana Ruiz\n"))
    with pytest.raises(UnknownEntity) as e:  # as near to both: the margin over the runner-up decides
        parse_question("who directed [Toy Story 4]", kb)
    assert str(e.value) == "topic entity 'Toy Story 4' is not in the KB; did you mean [Toy Story 2], [Toy Story 3]?"
    assert e.value.name == "Toy Story 4" and e.value.suggestions == ["Toy Story 2", "Toy Story 3"]
    with pytest.raises(UnknownEntity, match=r"'heat' is not in the KB; did you mean \[Heat\], \[HEAT\]\?$"):
        parse_question("what genre is [heat]", kb)  # normalised, it is both
    with pytest.raises(UnknownEntity, match=r"'Frank Lee' is not in the KB; did you mean \[Frank Liu\]\?$"):
        parse_question("who does [Frank Lee] report to", kb)  # near, but under the bar
    assert parse_question("who does [frank  LIU] report to", kb) == [kb.entity_ids["Frank Liu"]]
    with pytest.raises(UnknownEntity) as e:
        parse_question("who directed [Qwxyz]", kb)
    assert str(e.value) == "topic entity 'Qwxyz' is not in the KB" and e.value.suggestions == []


def test_question_files_keep_exact_names(write, demo):
    """A fuzzy match in training data would change its labels silently: files are read exactly."""
    kb = demo[0]
    qs, report = read_questions(write("qa.txt", "who directed [the electric harbor]\tPablo Jensen\n"
                                                "who directed [The Electric Harbor]\tPablo Jensen\n"), kb)
    assert [q.text for q in qs] == ["who directed [The Electric Harbor]"] and report.missing_topic == 1


def test_the_alias_index_is_built_once_per_kb_and_only_for_a_name_that_is_not_exact(write, cache):
    from kgqa.questions import parse_question

    kb = KnowledgeBase.load(write("kb.txt", "Heat|directed_by|Michael Mann\n"))
    parse_question("who directed [Heat]", kb)
    assert kb._aliases is None  # an exact name is a dictionary lookup
    parse_question("who directed [heat]", kb)
    index = kb.aliases
    assert parse_question("what did [Micheal Mann] direct", kb) == [kb.entity_ids["Michael Mann"]]
    assert kb.aliases is index and index.names == kb.entities


def test_kgqa_ask_shows_how_it_read_a_forgiving_name(trained_demo):
    from kgqa import cli

    cli._import_model_layer()  # explain is called here directly, not through main(), which imports for it
    text = cli.explain(trained_demo, "who directed [The Electrik Harbour]")
    assert text.splitlines()[1] == "  read [The Electrik Harbour] as [The Electric Harbor] (fuzzy match)"
    assert "read [" not in cli.explain(trained_demo, "who directed [The Electric Harbor]")
    assert cli.explain(trained_demo, "who directed [The Electric Harbour Company Limited]").splitlines()[1].startswith(
        "  cannot answer: topic entity 'The Electric Harbour Company Limited' is not in the KB; did you mean "
        "[The Electric Harbor], ")  # the nearest first
    # the Python API and `kgqa ask --json` say it too
    r = trained_demo.ask("who directed [the electric harbor]")
    assert r.topics == ["The Electric Harbor"]
    assert r.to_dict()["read_as"] == [{"name": "the electric harbor", "entity": "The Electric Harbor",
                                       "how": "normalised", "similarity": 1.0}]


def test_nearest_names_for_a_question_where_no_span_names_an_entity(write, cache):
    """Learned entities: what `kgqa ask` suggests when no span of the question names an entity."""
    from kgqa.mentions import find_mentions, nearest_names

    kb = KnowledgeBase.load(write("kb.txt", "Bartholomew Quincey|reports_to|Alexandra Whitfield\n"))
    plain = "who does Bartolomeo report to"  # one word of two, misspelt: under find_mentions' bar
    assert find_mentions(plain, kb.aliases) == []
    assert [kb.entities[e] for e in nearest_names(plain, kb.aliases)] == ["Bartholomew Quincey"]
    assert nearest_names("zzz qqq", kb.aliases) == []
