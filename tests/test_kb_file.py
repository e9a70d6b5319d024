"""kgqa_kernels.kb_file: the one KB file reader, behind kgqa.KnowledgeBase.load and the benchmark
suite's load_triples: both separators (in one file too), CRLF and lone-CR line ends, UTF-8 names,
byte-order marks, blank lines, and malformed or undecodable lines named by file and line (raised,
or skipped and listed)."""
import pytest
import torch

from kgqa import KnowledgeBase
from kgqa_kernels.bench.workloads import load_triples
from kgqa_kernels.kb_file import BLOCK_CHARS, KBFormatError, read_triples, text_lines

# Both separators, CRLF line ends, a blank line, spaces around fields, non-ASCII names, and a "|"
# inside a tab-separated name.
MIXED = ("Amélie|directed_by|Jean-Pierre Jeunet\r\n"
         "Amélie\tstarred_actors\tAudrey Tautou\r\n"
         "\r\n"
         " Delicatessen | directed_by | Jean-Pierre Jeunet \r\n"
         "Paris|Texas\tdirected_by\tWim Wenders\r\n")
NAMES = ["Amélie", "Jean-Pierre Jeunet", "Audrey Tautou", "Delicatessen", "Paris|Texas", "Wim Wenders"]
FACTS = [[0, 0, 1], [0, 1, 2], [3, 0, 1], [4, 0, 5]]


def _write_bytes(path, text):
    path.write_bytes(text.encode("utf-8"))  # no BOM; the line ends exactly as given
    return path


def test_both_separators_and_crlf(tmp_path):
    path = _write_bytes(tmp_path / "kb.txt", MIXED)
    assert path.read_bytes()[:3] != b"\xef\xbb\xbf" and b"\r\n" in path.read_bytes()
    f = read_triples(path)
    assert f.entities == NAMES and f.relations == ["directed_by", "starred_actors"]
    assert f.triples.dtype == torch.int64 and f.triples.tolist() == FACTS
    assert f.lines == 5 and f.skipped == [] and f.num_facts == 4
    assert not any("\r" in n for n in f.entities + f.relations)
    # Line ends do not matter: LF, CRLF and a lone CR read the same.
    for name, eol in (("lf.txt", "\n"), ("cr.txt", "\r")):
        again = read_triples(_write_bytes(tmp_path / name, MIXED.replace("\r\n", eol)))
        assert again.entities == f.entities and torch.equal(again.triples, f.triples)


def test_both_callers_read_the_same_facts(tmp_path, monkeypatch):
    monkeypatch.setenv("KGQA_CACHE", str(tmp_path / "cache"))
    path = _write_bytes(tmp_path / "kb.txt", MIXED)
    kb = KnowledgeBase.load(path)
    s, p, o, ne, nr = load_triples(str(path))
    assert (ne, nr) == (kb.num_entities, len(kb.base_relations)) == (6, 2)
    assert torch.equal(torch.stack([s, p, o], 1), kb.triples) and kb.triples.tolist() == FACTS
    assert kb.entities == NAMES and kb.report.lines == 5 and kb.report.facts == 4
    named = {(kb.entities[a], kb.base_relations[r], kb.entities[b])
             for a, r, b in zip(s.tolist(), p.tolist(), o.tolist())}
    assert ("Paris|Texas", "directed_by", "Wim Wenders") in named
    assert ("Amélie", "starred_actors", "Audrey Tautou") in named
    assert KnowledgeBase.load(path).entities == NAMES  # and again from the cache


def test_malformed_lines_name_file_and_line(tmp_path):
    path = _write_bytes(tmp_path / "bad.txt", "a|r|b\r\na|r\r\n\r\nc\tr\td\r\nc\t\td\r\nx|y|z|w\r\n")
    with pytest.raises(KBFormatError, match=r"bad\.txt:2: expected 3 fields separated by '\|' .*got 2: 'a\|r'$"):
        read_triples(path)
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 3 fields"):  # to the bench: a ValueError
        load_triples(str(path))
    f = read_triples(path, on_error="skip")
    assert f.triples.tolist() == [[0, 0, 1], [2, 0, 3]] and f.lines == 6
    assert len(f.skipped) == 3
    assert f.skipped[0].endswith("bad.txt:2: expected 3 fields separated by '|' (subject|relation|object), got 2: 'a|r'")
    assert "bad.txt:5: empty subject, relation or object" in f.skipped[1] and "\\r" not in f.skipped[1]
    assert "bad.txt:6: expected 3 fields separated by '|'" in f.skipped[2] and "got 4" in f.skipped[2]
    kb = KnowledgeBase.load(path, on_error="skip", use_cache=False)
    assert kb.report.skipped == f.skipped and kb.triples.tolist() == f.triples.tolist()


def test_no_facts_and_bad_arguments(tmp_path):
    empty = _write_bytes(tmp_path / "empty.txt", "\r\n  \r\n")
    with pytest.raises(KBFormatError, match=r"empty\.txt: no facts found"):
        read_triples(empty)
    with pytest.raises(KBFormatError, match="no facts"):  # skipping never makes an empty KB
        read_triples(_write_bytes(tmp_path / "all_bad.txt", "a|b\n"), on_error="skip")
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        read_triples(empty, on_error="ignore")
    with pytest.raises(FileNotFoundError):
        read_triples(tmp_path / "missing.txt")


def test_a_byte_order_mark_never_makes_a_ghost_entity(tmp_path):
    # One at the start of the file (Notepad's UTF-8) and one where a second such file was appended.
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfA|r|B\r\nC|r|D\r\n" + b"\xef\xbb\xbfA\tr\tE\r\n")
    f = read_triples(path)
    assert f.entities == ["A", "B", "C", "D", "E"] and f.triples.tolist() == [[0, 0, 1], [2, 0, 3], [0, 0, 4]]
    assert not any("\ufeff" in n for n in f.entities + f.relations)


def test_a_line_that_is_not_utf8_is_named_or_skipped(tmp_path):
    # Latin-1 "é" (0xe9) on line 400, past the first 8 KiB the decoder reads at once: the error used
    # to give only that chunk's offset ("position 8175"), no file or line.
    good = "".join(f"film {i}|directed_by|director {i % 7}\n" for i in range(399))
    path = tmp_path / "latin1.txt"
    path.write_bytes(good.encode() + b"Am\xe9lie|directed_by|Jeunet\n" + b"Heat|directed_by|Mann\n")
    assert len(good) > 8192
    with pytest.raises(KBFormatError, match=r"latin1\.txt:400: not UTF-8: byte 0xe9 at character 3 \(convert"):
        read_triples(path)
    with pytest.raises(ValueError, match=r"latin1\.txt:400: not UTF-8"):
        load_triples(str(path))
    f = read_triples(path, on_error="skip")
    assert f.num_facts == 400 and f.lines == 401 and "Heat" in f.entities
    assert len(f.skipped) == 1 and f.skipped[0].startswith(f"{path}:400: not UTF-8: byte 0xe9")
    assert not any("\udce9" in n or "Am" in n for n in f.entities)


def test_undecodable_lines_past_the_first_block_keep_their_numbers(tmp_path):
    line = "x" * 99 + "\n"
    n = BLOCK_CHARS // len(line) + 50  # the bad line sits in the second block of lines read
    path = tmp_path / "big.txt"
    path.write_bytes((line * n).encode() + b"bad \xff\n" + "Ol\u00e1\r\n".encode() + b"\xef\xbb\xbflast")
    skipped = []
    lines = list(text_lines(path, skipped=skipped))
    assert len(lines) == n + 2 and lines[0] == (1, "x" * 99)
    assert lines[-2:] == [(n + 2, "Ol\u00e1"), (n + 3, "last")]
    assert skipped == [f"{path}:{n + 1}: not UTF-8: byte 0xff at character 5 "
                       f"(convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8)"]
    with pytest.raises(KeyError, match=f":{n + 1}: not UTF-8"):
        list(text_lines(path, KeyError))
