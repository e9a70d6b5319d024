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
