"""Questions in words from relation names: the one owner of how the question generators
(``kgqa.generate``, ``kgqa.two_entity``) say a relation.

A name is split into words (``_``, ``-``, spaces, camelCase, and ``/``, ``.`` and ``__`` for
Freebase-style ``__music__recording__releases``, whose last part is the property and the part
before it the subject's type) and read as one of four shapes, with a small built-in word list:

- ``verb``: a verb, maybe with a preposition or an object noun: ``reports_to``, ``works_in``,
  ``manages``, ``starred_actors`` ("who does [X] report to", "who reports to [X]");
- ``copula``: "is <participle or adjective> <preposition>": ``directed_by``, ``located_in``,
  ``married_to``, ``isAdjacentTo`` ("who directed [X]", "what is located in [X]");
- ``noun_of``: "is a <noun> of": ``parent_of``, ``member_of`` ("who is the parent of [X]");
- ``noun``: anything else: ``release_year``, ``has_genre``, ``in_language``, Freebase properties
  ("what is the release year of [X]", "whose release year is [X]").

``Phrasing(name)`` gives, for each direction (forward: the topic is the fact's subject and the
answers its objects; inverse: the other way round), several templates of three kinds:

- ``ask``: a question about the topic phrase x;
- ``describe``: a noun phrase for the answers, which the generators nest for multi-hop questions
  ("who is the director of the things [X] starred in");
- ``clause``: a relative clause whose subject is an answer ("reports to [X]"), which the 2-entity
  generator joins with "and".

The topic phrase is a bracketed name or a nested noun phrase (``plural=True``: "the people who
work in [X]"); ``many`` says whether the answers are several, for "is"/"are".

Limits: the word list is small and English; a verb it does not know reads as a noun ("what is the
X of [Y]"), who/what/where come from the word list, not from the KB, and nested noun phrases grow
long at three hops. MetaQA's relations keep hand-written 2-entity phrasings (``METAQA_*``), which
the recorded 2-entity experiments used."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from .relation_names import name_words

PREPOSITIONS = {"to", "in", "of", "by", "for", "at", "on", "from", "with", "into", "as", "about", "under", "over",
                "after", "before", "near", "within", "during", "onto", "towards", "toward", "through", "across",
                "against", "among", "between", "behind", "beside", "upon", "via", "per"}
AUXILIARIES = {"is", "was", "are", "were", "be", "been", "being", "gets", "got"}
POSSESSIVE = {"has", "have", "had", "with"}

# Regular verbs (their other forms follow English rules) and irregular ones: base -> (past, participle).
REGULAR_VERBS = """
accompany act adapt administer advise affiliate appear assign associate attend author award base belong border
cite close coach collaborate compose connect contain cover create date depict describe design develop die direct
discover edit employ end enroll feature fire flow follow found fund graduate head hire host include influence
inspire invent join kill like list live locate love manage marry mention mentor name narrate neighbour nominate
occupy occur open operate own paint partner participate perform play precede prefer produce publish rate receive
record reference relate release rename replace report represent require reside review serve settle situate
sponsor star start study succeed supervise support tag talk title train translate use visit work""".split()
IRREGULAR_VERBS: Dict[str, Tuple[str, str]] = {
    "be": ("was", "been"), "bear": ("bore", "born"), "beat": ("beat", "beaten"), "become": ("became", "become"),
    "begin": ("began", "begun"), "bring": ("brought", "brought"), "build": ("built", "built"),
    "buy": ("bought", "bought"), "choose": ("chose", "chosen"), "do": ("did", "done"), "draw": ("drew", "drawn"),
    "drive": ("drove", "driven"), "fight": ("fought", "fought"), "fly": ("flew", "flown"), "give": ("gave", "given"),
    "go": ("went", "gone"), "grow": ("grew", "grown"), "have": ("had", "had"), "hold": ("held", "held"),
    "keep": ("kept", "kept"), "know": ("knew", "known"), "lead": ("led", "led"), "leave": ("left", "left"),
    "lose": ("lost", "lost"), "make": ("made", "made"), "meet": ("met", "met"), "pay": ("paid", "paid"),
    "read": ("read", "read"), "run": ("ran", "run"), "see": ("saw", "seen"), "sell": ("sold", "sold"),
    "send": ("sent", "sent"), "set": ("set", "set"), "shoot": ("shot", "shot"), "sing": ("sang", "sung"),
    "speak": ("spoke", "spoken"), "take": ("took", "taken"), "teach": ("taught", "taught"), "tell": ("told", "told"),
    "win": ("won", "won"), "write": ("wrote", "written"),
}
# Who does it, to whom, where: the subject of these verbs is a person ("who works in [X]") ...
SUBJECT_PERSON = set("""act advise appear attend author coach compose die direct draw edit fight graduate invent
join know lead like live love manage marry meet mentor narrate paint participate perform play report reside
sing speak study supervise talk teach visit win work write""".split())
# ... with a preposition only ("[X] starred in": a person; "[X] starred [Y]": a film) ...
SUBJECT_PERSON_WITH_PREPOSITION = {"star", "feature"}
# ... their object is a person ("who does [X] mentor", "who is [X] married to") ...
OBJECT_PERSON = set("""advise bear coach employ feature fire follow hire influence kill know like love
marry meet mentor nominate replace report star succeed supervise talk teach train visit""".split())
# ... and with "in" or "at", a place ("where does [X] work").
PLACE_VERBS = {"base", "bear", "die", "live", "locate", "reside", "settle", "situate", "study", "work", "grow"}
# Things made, whose facts are in the past ("who directed [X]", "what was [X] written by").
MADE = set("""author bear build compose create design develop direct discover draw edit found invent make
narrate paint produce publish record release translate write""".split())
AGENT_NOUNS = {"author": "author", "compose": "composer", "create": "creator", "design": "designer",
               "develop": "developer", "direct": "director", "edit": "editor", "employ": "employer",
               "found": "founder", "invent": "inventor", "lead": "leader", "manage": "manager",
               "narrate": "narrator", "own": "owner", "paint": "painter", "perform": "performer",
               "produce": "producer", "publish": "publisher", "sing": "singer", "translate": "translator",
               "write": "writer"}
# Nouns for people: "who is the parent of [X]" (for the other nouns: "what").
PERSON_NOUNS = set("""actor author boss brother ceo child colleague composer coworker creator daughter director
editor employee employer father founder friend husband leader manager member mentor mother neighbour parent
partner people person player president producer sibling singer sister son spouse student supervisor teacher
wife writer cast citizen resident native""".split())
# ... and those whose other side is a person too ("who is [X] a parent of").
KIN_NOUNS = set("""brother child colleague coworker daughter father friend husband mother neighbour parent partner
sibling sister son spouse wife""".split())

IRREGULAR_PLURALS = {"person": "people", "child": "children", "man": "men", "woman": "women", "wife": "wives",
                     "life": "lives", "foot": "feet", "tooth": "teeth", "mouse": "mice", "criterion": "criteria",
                     "series": "series", "species": "species", "genus": "genera", "analysis": "analyses"}
NOT_PLURAL = {"news", "series", "species", "status", "class", "address", "business", "process", "analysis",
              "basis", "genus", "campus", "bus", "gas", "lens", "physics", "mathematics", "economics"}


# ---- words ----------------------------------------------------------------------------------------


def split_name(name: str) -> Tuple[List[str], Optional[str]]:
    """(the property's words, lowercase; the subject's type or None). ``__music__recording__releases``
    -> (["releases"], "recording"); ``/people/person/place_of_birth`` -> (["place", "of", "birth"],
    "person"); ``reportsTo`` -> (["reports", "to"], None)."""
    parts = [p for p in re.split(r"__|/|\.", name) if p.strip("_ ")]
    subject_type = None
    if len(parts) >= 2:  # Freebase: domain / type / property
        subject_type = " ".join(_words(parts[-2])) or None
        parts = parts[-1:]
    words = _words(parts[0]) if parts else []
    return (words or ["relation"]), subject_type  # a name without a letter or digit


def _words(text: str) -> List[str]:
    return name_words(text)  # letters and digits only: no other character reaches a template


def plural(noun: str) -> str:
    """The plural of a noun phrase: its head word (the one before "of", else the last) in the plural."""
    words = noun.split()
    if not words:
        return noun
    i = words.index("of") - 1 if "of" in words[1:] else len(words) - 1
    words[i] = _plural_word(words[i])
    return " ".join(words)


def _plural_word(w: str) -> str:
    if w in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[w]
    if is_plural(w):
        return w
    return _add_s(w, ("s", "x", "z", "ch", "sh"))


def is_plural(noun: str) -> bool:
    w = plural_head(noun)
    if w in IRREGULAR_PLURALS.values() and w not in IRREGULAR_PLURALS:
        return True
    return w.endswith("s") and not w.endswith(("ss", "us", "is")) and w not in NOT_PLURAL


def plural_head(noun: str) -> str:
    words = noun.split() or [""]
    return words[words.index("of") - 1] if "of" in words[1:] else words[-1]


def article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def third_person(base: str) -> str:
    if base == "be":
        return "is"
    if base == "have":
        return "has"
    return _add_s(base, ("s", "x", "z", "ch", "sh", "o"))  # a verb in -o takes -es too ("goes")


def _add_s(w: str, takes_es) -> str:
    """``w`` + "es" after an ending of ``takes_es``, "ies" for a consonant + "y", else + "s": the
    noun plural's and the verb's third person's shared rule."""
    if w.endswith(tuple(takes_es)):
        return w + "es"
    if re.search(r"[^aeiou]y$", w):
        return w[:-1] + "ies"
    return w + "s"


def _past(base: str) -> str:
    if base in IRREGULAR_VERBS:
        return IRREGULAR_VERBS[base][0]
    if base.endswith("e"):
        return base + "d"
    if re.search(r"[^aeiou]y$", base):
        return base[:-1] + "ied"
    if re.search(r"^[^aeiou]*[aeiou][bdgmnprt]$", base):  # star -> starred, plan -> planned (one syllable)
        return base + base[-1] + "ed"
    return base + "ed"


@dataclass(frozen=True)
class Verb:
    base: Optional[str]  # None: an -ed word the word list does not know
    third: str
    past: str
    participle: str


def _verb_table() -> Dict[str, Tuple[Verb, str]]:
    """Every form of every known verb -> (the verb, "base", "third", "past", "participle" or "pastpart")."""
    table: Dict[str, Tuple[Verb, str]] = {}
    for base in REGULAR_VERBS + list(IRREGULAR_VERBS):
        past, participle = IRREGULAR_VERBS.get(base, (None, None))
        past = past or _past(base)
        verb = Verb(base, third_person(base), past, participle or past)
        forms = ((verb.base, "base"), (verb.third, "third"), (verb.past, "past"), (verb.participle, "participle"))
        for form, tag in forms:
            tag = "pastpart" if verb.past == verb.participle and form == verb.past else tag
            table.setdefault(form, (verb, tag))
    return table


VERB_FORMS = _verb_table()


def verb_form(word: str) -> Optional[Tuple[Verb, str]]:
    """(the verb, which form) for a known verb form, or an unknown -ed word (a participle); None else."""
    if word in VERB_FORMS:
        return VERB_FORMS[word]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return Verb(None, word, word, word), "pastpart"
    return None


# ---- a relation's shape ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    kind: str  # "noun", "noun_of", "verb", "copula"
    noun: str = ""  # noun, noun_of: the noun; verb: its object noun ("starred actors"), if any
    verb: Optional[Verb] = None  # verb, copula
    past: bool = False  # verb: the relation is said in the past ("starred", "acted in")
    predicate: str = ""  # copula: the words after "is" ("directed by"); verb: the words after the verb ("to")
    preposition: str = ""  # the trailing preposition, if any ("to", "in"); noun: a leading one ("in language")
    subject_type: Optional[str] = None  # Freebase's type: what the subjects are


def shape(name: str) -> Shape:
    """How the relation ``name`` reads (see the module's docstring)."""
    words, subject_type = split_name(name)
    passive = False
    if len(words) > 1 and words[0] in AUXILIARIES:  # isLocatedIn, was_born_in, is_part_of
        passive, words = True, words[1:]
    if len(words) > 1 and words[0] in POSSESSIVE:
        form = verb_form(words[1])
        if form and form[1] in ("participle", "pastpart"):  # has_won_prize: a perfect tense
            words = words[1:]
        else:  # has_genre, hasChild, with_tags: a noun
            return Shape("noun", noun=" ".join(words[1:]), subject_type=subject_type)
    if len(words) > 1 and words[0] in PREPOSITIONS:  # in_language
        return Shape("noun", noun=" ".join(words[1:]), preposition=words[0], subject_type=subject_type)
    prep = words[-1] if len(words) > 1 and words[-1] in PREPOSITIONS else ""
    head = words[:-1] if prep else words
    form = verb_form(head[0])
    if form is not None and form[1] == "base" and not prep and len(head) > 1:
        form = None  # release_year, work_place: a noun that is also a verb
    if form is not None and form[1] == "third" and subject_type and not prep and len(head) == 1:
        form = None  # Freebase's properties are nouns: __music__recording__releases
    if form is None and prep not in ("", "of") and len(head) == 1 and head[0].endswith("s") and not passive:
        # reportsTo, belongs_to: an unknown verb before a preposition, in the third person
        form = Verb(head[0][:-1], head[0], head[0][:-1] + "ed", head[0][:-1] + "ed"), "third"
    if form is None:
        if prep == "of":
            return Shape("noun_of", noun=" ".join(head), subject_type=subject_type)
        if prep:  # adjacent_to, expert_in: "is <words> <prep>"
            return Shape("copula", predicate=" ".join(words), preposition=prep, subject_type=subject_type)
        return Shape("noun", noun=" ".join(words), subject_type=subject_type)
    verb, tag = form
    rest = head[1:] + ([prep] if prep else [])
    if tag == "participle" or (tag == "pastpart" and (passive or prep == "by" or _stative(verb, prep))):
        return Shape("copula", verb=verb, predicate=" ".join([head[0]] + rest), preposition=prep,
                     subject_type=subject_type)
    if tag == "pastpart" and verb.base is None and not prep and len(head) == 1:
        return Shape("noun", noun=head[0], subject_type=subject_type)  # an -ed word alone: not sure it is a verb
    noun = " ".join(head[1:]) if not prep else ""
    return Shape("verb", noun=noun, verb=verb, past=tag in ("past", "pastpart"),
                 predicate=" ".join(rest) if prep else "", preposition=prep, subject_type=subject_type)


def _stative(verb: Verb, prep: str) -> bool:
    """'located in', 'married to', 'based in': a state (is located in), not an act (acted in)."""
    return bool(prep) and verb.base in {"locate", "situate", "base", "marry", "relate", "connect", "affiliate",
                                        "associate", "bear", "name", "title", "list", "set", "release",
                                        "publish", "make", "record"}


# ---- templates ----------------------------------------------------------------------------------


def _be(plural: bool, past: bool = False) -> str:
    return ("were" if plural else "was") if past else ("are" if plural else "is")


def _has(plural: bool) -> str:
    return "have" if plural else "has"


def _does(plural: bool, past: bool = False) -> str:
    return "did" if past else ("do" if plural else "does")


def _named(x: str) -> bool:
    """Whether the topic phrase is a bracketed name, which takes "'s" ("[X]'s genre") where a
    nested noun phrase would not read."""
    return re.fullmatch(r"\[[^\]]*\]", x) is not None


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


class Phrasing:
    """Templates for one relation name (see the module's docstring). Each method returns several
    phrasings; the generators pick one at random. ``x``: the topic phrase; ``plural``: x is
    plural ("the people who ..."); ``many``: the answers are several."""

    def __init__(self, name: str):
        self.name = name
        self.shape = shape(name)

    def wh(self, inverse: bool) -> str:
        """The question word for the answers: "who", "what" or "where"."""
        s = self.shape
        base = s.verb.base if s.verb else None
        noun = _singular(plural_head(s.noun)) if s.noun else ""
        if inverse:  # the answers are the facts' subjects
            if s.subject_type:
                return "who" if plural_head(s.subject_type) in PERSON_NOUNS else "what"
            if s.kind == "noun_of":
                return "who" if noun in PERSON_NOUNS else "what"
            if s.kind == "noun":  # hasChild: the subjects are people too
                return "who" if noun in KIN_NOUNS else "what"
            if s.kind == "verb":
                people = SUBJECT_PERSON | (SUBJECT_PERSON_WITH_PREPOSITION if s.preposition else set())
                return "who" if base in people else "what"
            return "who" if base in OBJECT_PERSON else "what"  # copula: "who is married to [X]"
        if s.kind == "noun":
            return "who" if noun in PERSON_NOUNS else "what"
        if s.kind == "noun_of":
            return "who" if noun in KIN_NOUNS else "what"
        if s.preposition in ("in", "at") and base in PLACE_VERBS:
            return "where"
        if s.kind == "copula":
            return "who" if s.preposition == "by" or (base in OBJECT_PERSON and s.preposition == "to") else "what"
        if s.noun:
            return "who" if noun in PERSON_NOUNS else "what"
        return "who" if base in OBJECT_PERSON else "what"

    def heads(self, inverse: bool, many: bool) -> str:
        """A noun for the answers ("the people who ..."), plural with ``many``."""
        s = self.shape
        if inverse and s.subject_type:
            one = s.subject_type
        elif not inverse and s.kind == "verb" and s.noun:
            one = _singular(s.noun)
        else:
            one = {"who": "person", "where": "place"}.get(self.wh(inverse), "thing")
        return plural(one) if many else one

    def ask(self, inverse: bool, x: str, plural: bool = False, many: bool = False) -> List[str]:
        """Questions whose answers are what the relation reaches from x."""
        return getattr(self, f"_{self.shape.kind}")(inverse, x, plural, many, "ask")

    def describe(self, inverse: bool, x: str, plural: bool = False, many: bool = True) -> List[str]:
        """Noun phrases for what the relation reaches from x."""
        return getattr(self, f"_{self.shape.kind}")(inverse, x, plural, many, "describe")

    def clause(self, x: str, many: bool = False) -> List[str]:
        """Relative clauses about the subjects of "subject -relation-> x" ("reports to [X]"), said
        of several with ``many`` ("report to [X]")."""
        return getattr(self, f"_{self.shape.kind}")(True, x, False, many, "clause")

    # one method per shape: (inverse, x, x plural, answers many, "ask", "describe" or "clause") ---

    def _noun(self, inverse, x, xp, many, what):
        s, n = self.shape, self.shape.noun
        if not inverse:  # the answers are x's n
            several = many or is_plural(n)
            ns, wh = (plural(n) if several else n), self.wh(False)
            if what == "describe":
                return [f"the {ns} of {x}"] + ([f"{x}'s {ns}"] if _named(x) else [])
            out = [f"{wh} {_be(several)} the {ns} of {x}", f"what {ns} {_does(xp)} {x} have",
                   f"{x} {_has(xp)} what {ns}"]
            if _named(x):
                out.append(f"{wh} {_be(several)} {x}'s {ns}")
            if s.preposition:  # in_language: "what language is [X] in"
                out.append(f"what {n} {_be(xp)} {x} {s.preposition}")
            return out
        # the answers have x as their n
        wh, heads = self.wh(True), self.heads(True, many)
        one = "one of " if xp else ""
        their = "their" if many or wh == "who" else "its"
        is_x = f"include {one}{x}" if is_plural(n) else f"is {one}{x}"
        if what == "clause":
            return [f"{_has(many)} {x} as {their} {n}", f"{_has(many)} the {n} {x}"]
        if what == "describe":
            return [f"the {heads} whose {n} {is_x}",
                    f"the {heads} with {one}{x} as {n}" if xp else f"the {heads} with the {n} {x}"]
        out = [f"whose {n} {is_x}", f"{wh} {_has(many)} {one}{x} as {their} {n}",
               f"which {self.heads(True, True)} have {one}{x} as their {n}" if xp
               else f"which {self.heads(True, True)} have the {n} {x}"]
        if s.preposition and _named(x):
            out.append(f"{wh} {_be(many)} {s.preposition} {x}")
        return out

    def _noun_of(self, inverse, x, xp, many, what):
        n = self.shape.noun
        if not inverse:  # x is an n of the answers
            wh = self.wh(False)
            a_n = plural(n) if xp else f"{article(n)} {n}"
            whose = f"whose {n} {'is one of' if xp else 'is'} {x}"
            if what == "describe":
                return [f"the {self.heads(False, many)} {whose}", f"those {whose}"]
            return [f"{wh} {_be(xp)} {x} {a_n} of", whose, f"{x} {_be(xp)} {a_n} of {wh}"]
        # the answers are n(s) of x
        wh, ns = self.wh(True), plural(n)
        an_n = ns if many else f"{article(n)} {n}"
        if what == "clause":
            return [f"{_be(many)} {an_n} of {x}"]
        if what == "describe":
            return [f"the {ns if many else n} of {x}"] + ([f"{x}'s {ns if many else n}"] if _named(x) else [])
        out = [f"{wh} {_be(many)} the {ns if many else n} of {x}", f"{wh} {_be(many)} {an_n} of {x}",
               f"name the {ns} of {x}"]
        if _named(x):
            out.append(f"{wh} {_be(many)} {x}'s {ns if many else n}")
        return out

    def _verb(self, inverse, x, xp, many, what):
        s, v = self.shape, self.shape.verb
        if not inverse:  # x does it to the answers
            wh, rest = self.wh(False), s.predicate
            said = v.past if s.past else (v.base if xp else v.third)  # "[X] reports to", "they report to"
            does = _does(xp, s.past)
            if what == "describe":
                return [f"the {self.heads(False, many)} {x} {_join(said, rest)}"]
            if s.noun:  # starred_actors: "which actors did [X] star"
                return [f"which {s.noun} {does} {x} {v.base}", f"{wh} {does} {x} {v.base}",
                        f"{wh} {_be(True)} the {plural(s.noun)} of {x}"]
            if wh == "where":
                return [f"where {does} {x} {v.base}", f"what {does} {x} {v.base} {rest}", f"{x} {said} {rest} what"]
            out = [f"{wh} {does} {x} {_join(v.base, rest)}", f"{x} {_join(said, rest)} {wh}"]
            if wh == "who" and s.preposition:
                out.append(f"{s.preposition} whom {does} {x} {v.base}")
            return out
        # the answers do it to x
        wh = self.wh(True)
        obj = f"the {s.noun} " if s.noun and not is_plural(s.noun) and _named(x) else ""  # "speaks the language [X]"
        one, several = (v.past, v.past) if s.past else (v.third, v.base)
        pred = _join(s.predicate, obj + x)
        rel = "who" if wh == "who" else "that"
        if what == "clause":
            return [f"{several if many else one} {pred}"]
        if what == "describe":
            return [f"the {self.heads(True, many)} {rel} {several if many else one} {pred}"]
        heads = self.heads(True, True)
        return [f"{wh} {one} {pred}", f"which {heads} {several} {pred}", f"name the {heads} {rel} {several} {pred}"]

    def _copula(self, inverse, x, xp, many, what):
        s, v = self.shape, self.shape.verb
        base = v.base if v else None
        past = base in MADE  # directed by, born in: said in the past
        by = s.preposition == "by" and base is not None  # "who directed [X]", "what did [X] direct"
        agent = AGENT_NOUNS.get(base) if by else None
        pred = s.predicate
        if not inverse:  # x is <pred> the answers
            wh, be = self.wh(False), _be(xp, past)
            did = (v.past if past else (v.base if xp else v.third)) if by else ""
            if what == "describe":
                if not by:
                    return [f"the {self.heads(False, many)} {x} {be} {pred}"]
                out = [f"the {self.heads(False, many)} who {v.past if past else v.base if many else v.third} {x}"]
                if agent:
                    out.append(f"the {plural(agent) if many else agent} of {x}")
                return out
            if wh == "where":
                out = [f"where {be} {x} {pred.rsplit(' ', 1)[0]}", f"what {be} {x} {pred}", f"{x} {be} {pred} what"]
            else:
                out = [f"{wh} {be} {x} {pred}", f"{x} {be} {pred} {wh}"]
            if by:
                out.append(f"{wh} {did if past else v.third} {x}")
            if agent:
                out.append(f"{wh} {_be(many)} the {plural(agent) if many else agent} of {x}")
            return out
        # the answers are <pred> x
        wh = self.wh(True)
        if what == "clause":
            return [f"{_be(many, past)} {pred} {x}"]
        if what == "describe":
            heads = self.heads(True, many)
            return [f"the {heads} {pred} {x}"] + ([f"the {heads} {x} {v.past if past else v.base if xp else v.third}"]
                                                  if by else [])
        out = [f"{wh} {_be(False, past)} {pred} {x}", f"which {self.heads(True, True)} {_be(True, past)} {pred} {x}"]
        if by:
            out.append(f"what {_does(xp, past)} {x} {base}")
        return out


def _singular(word: str) -> str:
    for one, many in IRREGULAR_PLURALS.items():
        if word == many:
            return one
    if word.endswith("ies"):
        return word[:-3] + "y"
    if re.search(r"(ch|sh|ss|x|z)es$", word):
        return word[:-2]
    if is_plural(word):
        return word[:-1]
    return word


@lru_cache(maxsize=None)
def phrasing(name: str) -> Phrasing:
    """The Phrasing of a relation name (cached: the generators ask for each name many times)."""
    return Phrasing(name)


# ---- MetaQA's hand-written 2-entity phrasings (what the recorded 2-entity experiments used) ------

# MetaQA facts point from a movie: (movie, relation, value). A phrase describes "movie -relation-> [X]".
METAQA_CLAUSES: Dict[str, List[str]] = {
    "starred_actors": ["starred [{}]", "featured [{}]", "had [{}] in the cast"],
    "directed_by": ["were directed by [{}]", "were made by director [{}]"],
    "written_by": ["were written by [{}]", "had a screenplay by [{}]"],
    "has_genre": ["are [{}] films", "belong to the genre [{}]"],
    "release_year": ["came out in [{}]", "were released in [{}]"],
    "in_language": ["are in [{}]", "were made in [{}]"],
    "has_tags": ["are tagged [{}]", "are about [{}]"],
}
# Two hops: the movies "movie -relation-> [X]" as a noun phrase, and the question asked of the
# values that both sets of movies reach by the last relation.
METAQA_MOVIES: Dict[str, List[str]] = {
    "starred_actors": ["films starring [{}]", "movies with [{}]"],
    "directed_by": ["films directed by [{}]", "movies by director [{}]"],
    "written_by": ["films written by [{}]", "movies [{}] wrote"],
    "has_genre": ["[{}] films"],
    "release_year": ["films from [{}]", "movies released in [{}]"],
    "in_language": ["films in [{}]"],
    "has_tags": ["films tagged [{}]"],
}
METAQA_ASK: Dict[str, List[str]] = {
    "starred_actors": ["which actors appeared in {a} and in {b}", "who acted both in {a} and in {b}",
                       "name the actors of {a} who were also in {b}"],
    "directed_by": ["who directed {a} and also {b}", "which directors made both {a} and {b}"],
    "written_by": ["who wrote {a} and also {b}", "which writers wrote both {a} and {b}"],
}


OPENERS = ["which movies {a} and {b}", "what films {a} and {b}", "name the movies that {a} and {b}"]


def intersection_question(rng, relation_a: str, a: str, relation_b: str, b: str) -> str:
    """A question for the subjects s of both facts (s, relation_a, [a]) and (s, relation_b, [b]):
    "who reports to [A] and works in [B]". A MetaQA relation keeps its hand-written phrasings."""
    if relation_a in METAQA_CLAUSES or relation_b in METAQA_CLAUSES:
        clause_a = _table_or(rng, METAQA_CLAUSES, relation_a, a, lambda p, x: p.clause(x, many=True))
        clause_b = _table_or(rng, METAQA_CLAUSES, relation_b, b, lambda p, x: p.clause(x, many=True))
        return rng.choice(OPENERS).format(a=clause_a, b=clause_b)
    pa, pb = phrasing(relation_a), phrasing(relation_b)
    wh = "who" if pa.wh(True) == pb.wh(True) == "who" else "what"
    heads = pa.heads(True, True) if pa.heads(True, True) == pb.heads(True, True) else "ones"
    opener, many = rng.choice([("{wh} {a} and {b}", False), ("which {heads} {a} and {b}", True),
                               ("name the {heads} that {a} and {b}", True)])
    clause_a = rng.choice(pa.clause(f"[{a}]", many))
    clause_b = rng.choice(pb.clause(f"[{b}]", many))
    return opener.format(wh=wh, heads=heads, a=clause_a, b=clause_b)


def shared_object_question(rng, relation_a: str, a: str, relation_b: str, b: str, last: str) -> str:
    """A question for the objects that ``last`` reaches both from the subjects of (s, relation_a,
    [a]) and from those of (s, relation_b, [b]): "where do both the people who report to [A] and
    the person who manages [B] work"."""
    phrase_a = _table_or(rng, METAQA_MOVIES, relation_a, a, lambda p, x: p.describe(True, x))
    phrase_b = _table_or(rng, METAQA_MOVIES, relation_b, b, lambda p, x: p.describe(True, x))
    if last in METAQA_ASK:
        return rng.choice(METAQA_ASK[last]).format(a=phrase_a, b=phrase_b)
    return rng.choice(phrasing(last).ask(False, f"both {phrase_a} and {phrase_b}", plural=True, many=True))


def _table_or(rng, table: Dict[str, List[str]], relation: str, name: str, generic) -> str:
    """One of the relation's hand-written phrasings in ``table`` ("...[{}]..."), else of
    ``generic(its Phrasing, "[name]")``."""
    if relation in table:
        return rng.choice(table[relation]).replace("[{}]", f"[{name}]")
    return rng.choice(generic(phrasing(relation), f"[{name}]"))


# ---- counting and superlative questions (kgqa.op_questions) ---------------------------------------

# A set of entities said as a noun phrase without its article ("films directed by [X]"), then
# asked about: how many there are, or which of them has the highest or lowest value of a numeric
# attribute. Year attributes (a name with the word "year") take words for time, others the
# attribute's name ("which film has the highest imdb rating").
COUNT_TEMPLATES = ["how many {many} are there", "what is the number of {many}", "count the {many}",
                   "give the number of {many}"]
SUPERLATIVE_TEMPLATES = {
    ("max", True): ["what is the most recent {one}", "which is the newest {one}", "what is the latest {one}",
                    "which of the {many} is the most recent"],
    ("min", True): ["what is the earliest {one}", "which is the oldest {one}", "which of the {many} is the earliest",
                    "which of the {many} is the oldest"],
    ("max", False): ["which {one} has the highest {attribute}", "what is the {one} with the highest {attribute}",
                     "which of the {many} has the largest {attribute}"],
    ("min", False): ["which {one} has the lowest {attribute}", "what is the {one} with the lowest {attribute}",
                     "which of the {many} has the smallest {attribute}"],
}
# 2-entity counts: the entities both clauses hold for ("starred [A]", "were directed by [B]")
COUNT_BOTH_TEMPLATES = ["how many {heads} {a} and {b}", "what is the number of {heads} that {a} and {b}",
                        "count the {heads} that {a} and {b}"]
# MetaQA: one relation of both entities, said of films together ("how many films did [A] and [B] star in together")
METAQA_TOGETHER = {"starred_actors": "star in", "directed_by": "make", "written_by": "write"}
_FILM_WORDS = {"films": "film", "movies": "movie"}


def set_phrases(relation: str, inverse: bool, x: str, plural: bool, many: bool) -> List[str]:
    """Noun phrases, without their article, for what ``relation`` reaches from the topic phrase x
    (a bracketed name, or a noun phrase with "the"): MetaQA's film phrasings where the relation
    is read from its value to films ("films directed by [X]", ``METAQA_MOVIES``; for a noun
    phrase only those where it follows a preposition or a verb), else those of
    ``Phrasing.describe`` that start with "the" ("people who work in [X]"). Singular unless
    ``many``."""
    tables = METAQA_MOVIES.get(relation, []) if inverse else []
    if not _named(x):  # a nested phrase reads only after a preposition or a verb ("films directed by the ...")
        tables = [t for t in tables if _before_topic(t) in PREPOSITIONS or _before_topic(t).endswith(("ed", "ing"))]
    if tables:
        out = [t.replace("[{}]", x) for t in tables]
        return out if many else [" ".join(_FILM_WORDS.get(w, w) for w in t.split(" ")) for t in out]
    said = phrasing(relation).describe(inverse, x, plural, many)
    return [t[len("the "):] for t in said if t.startswith("the ")]


def _before_topic(template: str) -> str:
    """The word before "[{}]" in a template, "" where it starts with it."""
    words = template.split("[{}]", 1)[0].split()
    return words[-1] if words else ""


def attribute_words(relation: str) -> Tuple[str, bool]:
    """(the attribute's name in words, whether it reads as a year): "release_year" ->
    ("release year", True), "has_imdb_rating" -> ("imdb rating", False)."""
    s = phrasing(relation).shape
    words = s.noun if s.kind in ("noun", "noun_of") and s.noun else " ".join(split_name(relation)[0])
    return words, "year" in words.split()


def count_question(rng, many: List[str]) -> str:
    """"how many films directed by [X] are there": one of ``many`` (plural noun phrases of the set,
    ``set_phrases``) in one of the count templates."""
    return rng.choice(COUNT_TEMPLATES).format(many=rng.choice(many))


def superlative_question(rng, mode: str, attribute: str, one: List[str], many: List[str]) -> str:
    """"what is the most recent film starring [X]" (mode "max") or "which is the earliest ..." ("min"),
    for the member(s) of the set (said singular in ``one``, plural in ``many``) whose ``attribute``
    (a relation name) is highest or lowest."""
    words, year = attribute_words(attribute)
    template = rng.choice(SUPERLATIVE_TEMPLATES[(mode, year)])
    return template.format(one=rng.choice(one), many=rng.choice(many), attribute=words)


def intersection_count_question(rng, relation_a: str, a: str, relation_b: str, b: str) -> str:
    """How many subjects s have both facts (s, relation_a, [a]) and (s, relation_b, [b]): "how many
    films starred [A] and were directed by [B]"; one relation for both: "how many films starred
    both [A] and [B]", and for MetaQA's people "how many films did [A] and [B] star in together"."""
    metaqa = relation_a in METAQA_CLAUSES or relation_b in METAQA_CLAUSES
    if metaqa:
        heads = rng.choice(["films", "movies"])
    else:
        pa, pb = phrasing(relation_a), phrasing(relation_b)
        heads = pa.heads(True, True) if pa.heads(True, True) == pb.heads(True, True) else "ones"

    def clause(relation: str, x: str) -> str:  # x: the bracketed topic phrase
        if relation in METAQA_CLAUSES:
            return rng.choice(METAQA_CLAUSES[relation]).replace("[{}]", x)
        return rng.choice(phrasing(relation).clause(x, True))

    if relation_a == relation_b:
        both = clause(relation_a, f"both [{a}] and [{b}]")
        options = [f"how many {heads} {both}", f"what is the number of {heads} that {both}"]
        if relation_a in METAQA_TOGETHER:
            options.append(f"how many {heads} did [{a}] and [{b}] {METAQA_TOGETHER[relation_a]} together")
        return rng.choice(options)
    return rng.choice(COUNT_BOTH_TEMPLATES).format(heads=heads, a=clause(relation_a, f"[{a}]"),
                                                   b=clause(relation_b, f"[{b}]"))
