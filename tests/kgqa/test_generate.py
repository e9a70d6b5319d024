"""kgqa.generate and kgqa.phrasing (`kgqa make-questions`): answers recomputed from the facts,
hop counts, inverses, determinism, phrasing of relation names, no path back to the topic, the file
read back, bad arguments."""
import pytest

from kgqa import KnowledgeBase, cli, read_questions, two_entity
from kgqa.generate import generate, kind_of
from kgqa.kb import INVERSE_SUFFIX
from kgqa.phrasing import phrasing, split_name
from kgqa.questions import MENTION, write_questions

ORG = """\
Frank Liu|reports_to|Ada Park
Maria Gomez|reports_to|Ada Park
Priya Nair|reports_to|Frank Liu
Omar Haddad|reports_to|Frank Liu
Lena Vogel|reports_to|Priya Nair
Kenji Sato|reports_to|Priya Nair
Sara Cohen|reports_to|Omar Haddad
Ivan Petrov|reports_to|Maria Gomez
Frank Liu|works_in|Engineering
Priya Nair|works_in|Engineering
Lena Vogel|works_in|Engineering
Kenji Sato|works_in|Engineering
Omar Haddad|works_in|Research
Sara Cohen|works_in|Research
Maria Gomez|works_in|Sales
Ivan Petrov|works_in|Sales
Engineering|located_in|Toronto
Research|located_in|Tokyo
Sales|located_in|Berlin
Frank Liu|manages|Engineering
Omar Haddad|manages|Research
Maria Gomez|manages|Sales
Priya Nair|member_of|Safety Committee
Sara Cohen|member_of|Safety Committee
Ada Park|member_of|Hiring Committee
Kenji Sato|member_of|Hiring Committee
"""


@pytest.fixture
def org(write):
    return KnowledgeBase.load(write("org.txt", ORG), use_cache=False)


def walk(kb, topic, path):
    """The answers of a relation path, recomputed from the facts: each hop follows a relation
    (``name~inv`` backwards) and drops the topic."""
    facts = [(s, kb.base_relations[p], o) for s, p, o in kb.triples.tolist()]
    here = {topic}
    for name in path:
        base = name[: -len(INVERSE_SUFFIX)] if name.endswith(INVERSE_SUFFIX) else name
        pairs = [(o, s) if name != base else (s, o) for s, r, o in facts if r == base]
        here = {b for a, b in pairs if a in here} - {topic}
    return here


def test_answers_are_the_facts_walked_from_the_topic(org):
    qs = generate(org, 3, n=240, seed=1)
    assert {kind_of(q) for q in qs} == {"1hop", "2hop", "3hop"}
    for q in qs:
        kind, path = q.qtype.split(":")
        path = path.split(">")
        assert len(path) == int(kind[0])
        (topic,) = q.topics
        assert MENTION.findall(q.text) == [org.entities[topic]]
        expect = walk(org, topic, path)
        assert set(q.answers) == expect and 0 < len(expect) <= 20, q
        assert topic not in q.answers


def test_hop_counts_shares_and_inverses(org, demo):
    kb = demo[0]
    qs = generate(kb, 3, n=30, seed=0)
    assert [kind_of(q) for q in qs] == ["1hop"] * 10 + ["2hop"] * 10 + ["3hop"] * 10
    assert {kind_of(q) for q in generate(kb, 2, n=20)} == {"1hop", "2hop"}
    # every relation both ways round, once the small KB runs out of distinct 1-hop questions
    one_hop = {q.qtype.split(":")[1] for q in generate(org, 1, n=1000)}
    assert one_hop == set(org.relations)
    # with two_entity: both 2-entity families, with their own answers (tests/kgqa/test_two_entity.py)
    qs = generate(kb, 2, n=40, with_two_entity=True)
    assert [kind_of(q) for q in qs] == ["1hop"] * 10 + ["2hop"] * 10 + ["2entity"] * 10 + ["2entity-2hop"] * 10
    assert all(len(q.topics) == 2 and q.text.count("[") == 2 for q in qs[20:])


def test_same_seed_same_questions(org):
    key = lambda qs: [(q.text, q.topics, q.answers, q.qtype) for q in qs]  # noqa: E731
    first = generate(org, 2, n=100, seed=3, with_two_entity=True)
    assert key(first) == key(generate(org, 2, n=100, seed=3, with_two_entity=True))
    assert key(first) != key(generate(org, 2, n=100, seed=4, with_two_entity=True))


def test_no_question_goes_back_to_its_topic(org, write):
    qs = generate(org, 2, n=400, seed=0)
    colleagues = [q for q in qs if q.qtype == "2hop:works_in>works_in~inv"]
    assert colleagues
    for q in colleagues:  # the people who work where the topic works, the topic left out
        (topic,) = q.topics
        assert topic not in q.answers and set(q.answers) == walk(org, topic, ["works_in", "works_in~inv"])
    # A|r|B and C|s|D: every 2-hop path returns to its topic, so there is no 2-hop question
    kb = KnowledgeBase.load(write("two.txt", "A|r|B\nC|s|D\n"), use_cache=False)
    qs = generate(kb, 2, n=50)
    assert qs and {kind_of(q) for q in qs} == {"1hop"}


def test_max_answers_skips_broad_questions(org):
    qs = generate(org, 2, n=100, max_answers=1)
    assert qs and all(len(q.answers) == 1 for q in qs)
    assert not any(q.qtype == "1hop:works_in~inv" and org.entities[q.topics[0]] == "Engineering" for q in qs)


@pytest.mark.parametrize("name, inverse, expect", [
    ("reports_to", False, "who does [X] report to"),
    ("reports_to", True, "who reports to [X]"),
    ("works_in", False, "where does [X] work"),
    ("works_in", True, "who works in [X]"),
    ("release_year", False, "what is the release year of [X]"),
    ("release_year", True, "whose release year is [X]"),
    ("__music__recording__releases", False, "what are the releases of [X]"),
    ("__music__recording__releases", True, "whose releases include [X]"),
    ("directed_by", False, "who directed [X]"),
    ("directed_by", True, "what did [X] direct"),
    ("written_by", False, "who is the writer of [X]"),
    ("starred_actors", False, "which actors did [X] star"),
    ("has_genre", False, "what is the genre of [X]"),
    ("in_language", False, "what language is [X] in"),
    ("located_in", False, "where is [X] located"),
    ("located_in", True, "what is located in [X]"),
    ("member_of", False, "what is [X] a member of"),
    ("member_of", True, "who is a member of [X]"),
    ("manages", True, "who manages [X]"),
    ("parent_of", True, "who is the parent of [X]"),
    ("parent_of", False, "whose parent is [X]"),
    ("isMarriedTo", False, "who is [X] married to"),
])
def test_phrasing_of_relation_names(name, inverse, expect):
    asked = phrasing(name).ask(inverse, "[X]")
    assert expect in asked and len(asked) >= 2  # several templates per pattern


def test_relation_names_split_into_words():
    assert split_name("__music__recording__releases") == (["releases"], "recording")
    assert split_name("/people/person/place_of_birth") == (["place", "of", "birth"], "person")
    assert split_name("reportsTo") == (["reports", "to"], None)
    assert split_name("film.film.directed_by") == (["directed", "by"], "film")
    # Freebase's subject type names what an inverse question asks for
    assert any("recording" in t for t in phrasing("__music__recording__releases").ask(True, "[X]"))
    # several answers: plural
    assert "who are the members of [X]" in phrasing("member_of").ask(True, "[X]", many=True)
    assert "what are the genres of [X]" in phrasing("has_genre").ask(False, "[X]", many=True)


def test_multi_hop_and_two_entity_phrasing_read_as_words(org):
    qs = generate(org, 3, n=300, with_two_entity=True)
    for q in qs:
        assert "_" not in q.text and "{" not in q.text and "of things whose" not in q.text, q.text
    # make-2entity on an org chart: "what is the reports to of things whose ..." before
    texts = [q.text for q in two_entity.generate(org, 30, seed=0)]
    assert texts and any(" report to [" in t or " reports to [" in t for t in texts)
    texts = [q.text for q in two_entity.generate(org, 10, seed=0, hops=2)]
    assert texts and not any("reports to of" in t for t in texts)


def test_the_file_reads_back(org, tmp_path):
    qs = generate(org, 2, n=60, with_two_entity=True)
    write_questions(tmp_path / "q.txt", qs, org)
    back, report = read_questions(tmp_path / "q.txt", org)
    assert report.kept == len(qs) and report.missing_answers == 0
    assert [(q.text, q.topics, q.answers) for q in back] == [(q.text, q.topics, q.answers) for q in qs]


def test_make_questions_command(write, tmp_path, capsys, cache):
    kb = write("org.txt", ORG)
    out, qtype = tmp_path / "q.txt", tmp_path / "qtype.txt"
    rc = cli.main(["make-questions", "--kb", str(kb), "--hops", "2", "--out", str(out), "--n", "40",
                   "--two-entity", "--qtype-out", str(qtype)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"wrote 40 questions to {out}: 1hop 10, 2hop 10, 2entity 10, 2entity-2hop 10" in printed
    loaded = KnowledgeBase.load(kb)
    qs, report = read_questions(out, loaded, qtype)
    assert len(qs) == 40 and [kind_of(q) for q in qs].count("2entity") == 10
    # a KB too small for its share says so
    rc = cli.main(["make-questions", "--kb", str(kb), "--hops", "1", "--out", str(out), "--n", "1000"])
    assert rc == 0 and "fewer distinct questions" in capsys.readouterr().out


@pytest.mark.parametrize("args, names", [
    (["--hops", "4"], "--hops"), (["--hops", "0"], "--hops"), (["--n", "0"], "--n"), (["--seed", "-1"], "--seed"),
    (["--max-answers", "0"], "--max-answers"), (["--out", "/nonexistent-folder/q.txt"], "--out"),
])
def test_make_questions_bad_arguments(write, tmp_path, capsys, args, names):
    argv = {"--kb": str(write("org.txt", ORG)), "--hops": "2", "--out": str(tmp_path / "q.txt")}
    argv.update(dict(zip(args[::2], args[1::2])))
    with pytest.raises(SystemExit) as exit:  # argparse's exit, status 2
        cli.main(["make-questions"] + [a for kv in argv.items() for a in kv])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and names in err and len(err.strip().splitlines()) == 1


def test_make_questions_missing_kb_and_api_errors(org, tmp_path, capsys):
    rc = cli.main(["make-questions", "--kb", str(tmp_path / "none.txt"), "--hops", "1",
                   "--out", str(tmp_path / "q.txt")])
    assert rc == 2 and "none.txt" in capsys.readouterr().err
    for kwargs, what in [({"hops": 4}, "hops"), ({"hops": 0}, "hops"), ({"hops": 1, "n": 0}, "n must"),
                         ({"hops": 1, "max_answers": 0}, "max_answers")]:
        with pytest.raises(ValueError, match=what):
            generate(org, **kwargs)


# ---- counting and superlative questions (kgqa.op_questions) --------------------------------------

FILMS = """\
Heat|directed_by|Michael Mann
Collateral|directed_by|Michael Mann
Thief|directed_by|Michael Mann
Ali|directed_by|Michael Mann
Alien|directed_by|Ridley Scott
Gladiator|directed_by|Ridley Scott
Legend|directed_by|Ridley Scott
Twins|directed_by|Ivan Reitman
Dave|directed_by|Ivan Reitman
Solo|directed_by|Ron Howard
Heat|starred_actors|Al Pacino
Heat|starred_actors|Robert De Niro
Collateral|starred_actors|Tom Cruise
Legend|starred_actors|Tom Cruise
Ali|starred_actors|Will Smith
Thief|starred_actors|James Caan
Gladiator|starred_actors|Russell Crowe
Twins|starred_actors|Danny DeVito
Dave|starred_actors|Kevin Kline
Alien|starred_actors|Tom Skerritt
Solo|starred_actors|Alden Ehrenreich
Heat|release_year|1995
Collateral|release_year|2004
Thief|release_year|1981
Ali|release_year|2001
Alien|release_year|1979
Gladiator|release_year|2000
Legend|release_year|1985
Legend|release_year|1987
Twins|release_year|1988
Dave|release_year|1988
Solo|release_year|2018
Heat|has_rating|8.3
Collateral|has_rating|7.5
Thief|has_rating|7.3
Alien|has_rating|8.5
Gladiator|has_rating|8.5
Legend|has_rating|6.5
Twins|has_rating|6.1
Dave|has_rating|6.8
Heat|has_genre|Western
Heat|has_genre|Noir
Heat|has_genre|Crime
Heat|has_genre|Drama
Heat|has_genre|Action
Western|release_year|1997
Noir|release_year|2005
"""
OPS = ["count", "argmax", "argmin"]


@pytest.fixture
def films(write):
    return KnowledgeBase.load(write("films.txt", FILMS), use_cache=False)


def facts_of(kb):
    return [(kb.entities[s], kb.base_relations[p], kb.entities[o]) for s, p, o in kb.triples.tolist()]


def values_of(kb, entity, attribute):
    """The numbers ``attribute`` leads to from ``entity`` (names read with float())."""
    found = set()
    for s, r, o in facts_of(kb):
        if s == entity and r == attribute:
            try:
                found.add(float(o))
            except ValueError:
                pass
    return found


def test_count_and_superlative_answers_recomputed_from_the_facts(films):
    qs = generate(films, 2, n=120, seed=0, ops=OPS)
    got = {k: [q for q in qs if kind_of(q) == k] for k in ("count", "count-2entity", "argmax", "argmin")}
    assert all(len(v) >= 5 for v in got.values()), {k: len(v) for k, v in got.items()}
    for q in got["count"]:
        path = q.qtype.split(":", 1)[1].split(">")
        assert 1 <= len(path) <= 2 and q.answers == [] and len(q.topics) == 1
        expect = walk(films, q.topics[0], path)
        assert q.count == len(expect) and 1 <= q.count <= 20 and set(q.members) == expect, q
    for q in got["count-2entity"]:
        ra, rb = q.qtype.split(":", 1)[1].split("+")
        a, b = (films.entities[t] for t in q.topics)
        both = {s for s, r, o in facts_of(films) if r == ra and o == a} & {s for s, r, o in facts_of(films)
                                                                             if r == rb and o == b}
        assert q.count == len(both) >= 1, q
    for kind, pick in (("argmax", max), ("argmin", min)):
        for q in got[kind]:
            path, attribute = q.qtype.split(":", 1)[1].split("@")
            members = walk(films, q.topics[0], path.split(">"))
            found = {m: v for m in members if (v := values_of(films, films.entities[m], attribute))}
            assert all(len(v) == 1 for v in found.values()), q  # no member of several values
            values = {m: v.pop() for m, v in found.items()}
            assert len(set(values.values())) >= 2, q  # a superlative: two members whose values differ
            assert len(values) >= len(members) / 2, q  # most members have a value
            best = pick(values.values())
            assert set(q.answers) == {m for m, v in values.items() if v == best}, q


def test_superlatives_need_two_different_values_and_ties_share(films):
    qs = generate(films, 1, n=400, seed=0, ops=["argmax", "argmin"])
    ids = films.entity_ids
    by_year = {films.entities[q.topics[0]] for q in qs if q.qtype.endswith("@release_year")}
    # Ivan Reitman's two films are both from 1988, Ron Howard has one: neither makes a superlative
    # by year (by rating, Reitman's do: 6.1 and 6.8)
    assert "Ivan Reitman" not in by_year and "Ron Howard" not in by_year and "Michael Mann" in by_year
    assert any(films.entities[q.topics[0]] == "Ivan Reitman" for q in qs if q.qtype.endswith("@has_rating"))
    one_hop = lambda who: {(kind_of(q), q.qtype.split("@")[1]): q.answers for q in qs  # noqa: E731
                           if q.topics == [ids[who]] and q.qtype.split(":")[1].startswith("directed_by~inv")}
    assert one_hop("Michael Mann")[("argmin", "release_year")] == [ids["Thief"]]
    assert one_hop("Michael Mann")[("argmax", "release_year")] == [ids["Collateral"]]
    # Legend has two years (1985 and 1987: two films of one title): Ridley Scott's films are not ranked by year
    scott = one_hop("Ridley Scott")
    assert ("argmax", "release_year") not in scott and ("argmin", "release_year") not in scott
    # Alien and Gladiator share the highest rating, 8.5 (Legend's 6.5): both are answers
    assert sorted(scott[("argmax", "has_rating")]) == sorted([ids["Alien"], ids["Gladiator"]])
    assert scott[("argmin", "has_rating")] == [ids["Legend"]]
    # Heat's genres: two of five (Western, Noir) are also titles with a year; most have none: not ranked
    assert not any(q.topics == [ids["Heat"]] and q.qtype.split(":")[1].startswith("has_genre@") for q in qs)


def test_op_phrasings_vary_and_say_years_as_time(films):
    qs = generate(films, 2, n=400, seed=1, ops=OPS)
    texts = lambda kind, attr="": [q.text for q in qs if kind_of(q) == kind and q.qtype.endswith(attr)]  # noqa: E731
    starts = {t.split(" [")[0].split(" films")[0].split(" movies")[0][:12] for t in texts("count")}
    assert len(starts) >= 3, starts
    assert all(t.count("[") == 2 for t in texts("count-2entity"))
    for kind, words in (("argmax", ("most recent", "newest", "latest")), ("argmin", ("earliest", "oldest"))):
        years = texts(kind, "@release_year")
        assert years and all(any(w in t for w in words) for t in years)
        assert len({next(w for w in words if w in t) for t in years}) >= 2
        rating = texts(kind, "@has_rating")
        assert rating and all("rating" in t and not any(w in t for w in words) for t in rating)
        assert len(set(t.split(" [")[0] for t in rating)) >= 2
    for q in qs:
        assert "_" not in q.text and "{" not in q.text, q.text


def test_count_caps_kinds_and_seeds(films, org):
    qs = generate(films, 2, n=200, seed=0, max_answers=2, ops=["count"])
    assert qs and all(1 <= q.count <= 2 for q in qs)
    assert [kind_of(q) for q in generate(films, 2, n=8, ops=["path", "count", "argmax"])] == \
        ["1hop"] * 2 + ["2hop"] * 2 + ["count"] * 2 + ["count-2entity"] + ["argmax"]
    # --two-entity is the same as adding 2-entity
    assert [kind_of(q) for q in generate(films, 1, n=4, with_two_entity=True, ops=["count"])] == \
        ["2entity", "2entity", "count", "count-2entity"]
    key = lambda qs: [(q.text, q.topics, q.answers, q.qtype, getattr(q, "count", None)) for q in qs]  # noqa: E731
    assert key(generate(films, 2, n=60, seed=3, ops=OPS)) == key(generate(films, 2, n=60, seed=3, ops=OPS))
    assert key(generate(films, 2, n=60, seed=3, ops=OPS)) != key(generate(films, 2, n=60, seed=4, ops=OPS))
    # no numeric attribute: no superlative
    assert generate(org, 2, n=20, ops=["argmax", "argmin"]) == []
    for ops in (["counts"], [], ["path", None]):
        with pytest.raises(ValueError, match="ops must be"):
            generate(films, 1, ops=ops)


def test_make_questions_with_ops(write, tmp_path, capsys, cache):
    kb = write("films.txt", FILMS)
    out, qtype = tmp_path / "q.txt", tmp_path / "qtype.txt"
    rc = cli.main(["make-questions", "--kb", str(kb), "--hops", "1", "--out", str(out), "--n", "40",
                   "--ops", "path,count,argmax,argmin", "--qtype-out", str(qtype)])
    assert rc == 0
    assert "1hop 8, count 8, count-2entity 8, argmax 8, argmin 8" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    kinds_written = qtype.read_text().splitlines()
    assert len(lines) == len(kinds_written) == 40
    assert kinds_written[8:] == ["count"] * 8 + ["count-2entity"] * 8 + ["argmax"] * 8 + ["argmin"] * 8
    assert all(k.startswith("1hop:") for k in kinds_written[:8])
    loaded = KnowledgeBase.load(kb)
    for line, kind in zip(lines, kinds_written):
        text, answers = line.split("\t")
        if kind.startswith("count"):
            assert answers.isdigit() and int(answers) >= 1, line
        else:
            assert all(a in loaded.entity_ids for a in answers.split("|")), line
    # no numeric attribute: said
    rc = cli.main(["make-questions", "--kb", str(write("org.txt", ORG)), "--hops", "1", "--out", str(out),
                   "--ops", "path,argmax"])
    assert rc == 0 and "no superlative question" in capsys.readouterr().out


@pytest.mark.parametrize("ops", ["counts", "", "path,,count", "path,path", "Count"])
def test_make_questions_bad_ops(write, tmp_path, capsys, ops):
    with pytest.raises(SystemExit) as exit:
        cli.main(["make-questions", "--kb", str(write("films.txt", FILMS)), "--hops", "1",
                  "--out", str(tmp_path / "q.txt"), "--ops", ops])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "--ops" in err and len(err.strip().splitlines()) == 1
