"""kgqa.questions: MetaQA question files, what is missing from the KB counted, malformed lines
named by file and line, and plain questions for learned entities."""
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
