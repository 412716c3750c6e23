"""Text corpora (the standard library, Tiny Shakespeare, text:PATH), tokenizers and bits per byte."""

import json
import math
import os
import platform
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from workbench.data import sources
from workbench.data.dataset import DatasetError
from workbench.data.text import (
    SHAKESPEARE_ENV,
    STDLIB_EXCLUDED,
    in_validation,
    load_text_corpus,
    pystdlib,
    text_file_corpus,
    tinyshakespeare,
)
from workbench.data.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    bits_per_byte,
    list_tokenizers,
    perplexity,
    tokenizer_from_dict,
    train_tokenizer,
)

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = Path(os.environ.get(SHAKESPEARE_ENV) or REPO.parent / "shared" / "data" / "tinyshakespeare.txt")
needs_shakespeare = pytest.mark.skipif(
    not SHAKESPEARE.is_file(), reason=f"needs Tiny Shakespeare: set {SHAKESPEARE_ENV} to a copy of input.txt"
)


@pytest.fixture(scope="module")
def stdlib():
    return pystdlib()


@pytest.fixture(scope="module")
def shakespeare():
    if not SHAKESPEARE.is_file():
        pytest.skip(f"needs Tiny Shakespeare: set {SHAKESPEARE_ENV} to a copy of input.txt")
    return tinyshakespeare(SHAKESPEARE)


# ---------------------------------------------------------------- the standard library


def test_pystdlib_is_split_by_file_with_no_file_on_both_sides(stdlib):
    rec = stdlib.source
    assert rec["python"] == platform.python_version() and rec["skipped_not_utf8"] == []
    assert rec["files"] > 100 and rec["train_files"] + rec["validation_files"] == rec["files"]
    assert 0.05 < rec["validation_files"] / rec["files"] < 0.15
    assert (
        rec["bytes"] == rec["train_bytes"] + rec["validation_bytes"] == len((stdlib.train + stdlib.validation).encode())
    )
    root = Path(rec["root"])
    # A file is wholly on one side: a validation file's text is in validation and nowhere in train.
    for rel in ("json/encoder.py", "subprocess.py"):
        assert in_validation(rel)
        text = (root / rel).read_text()
        assert text in stdlib.validation and text not in stdlib.train
    text = (root / "json/decoder.py").read_text()
    assert not in_validation("json/decoder.py") and text in stdlib.train and text not in stdlib.validation
    assert set(rec["excluded"]) >= {"test", "tests", "idlelib", "site-packages"}


def test_pystdlib_leaves_out_tests_and_other_trees(stdlib):
    root, everything = Path(stdlib.source["root"]), stdlib.train + stdlib.validation
    left_out = ["unittest/test/test_case.py", "idlelib/editor.py", "turtledemo/clock.py", "pydoc_data/topics.py"]
    for rel in left_out:
        assert PurePosixPath(rel).parts[-2] in STDLIB_EXCLUDED and (root / rel).read_text() not in everything
    assert (root / "unittest" / "case.py").read_text() in everything


def test_pystdlib_is_the_same_every_time(stdlib):
    again = pystdlib()
    assert again.train == stdlib.train and again.validation == stdlib.validation
    assert again.source == stdlib.source
    assert len(stdlib.source["files_sha256"]) == len(stdlib.source["sha256"]) == 64
    json.dumps(stdlib.source)  # the record is stored with a run


# ---------------------------------------------------------------- Tiny Shakespeare


@needs_shakespeare
def test_tinyshakespeare_through_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(SHAKESPEARE_ENV, str(SHAKESPEARE))
    c = load_text_corpus("tinyshakespeare", root=tmp_path)
    assert (len(c.train), len(c.validation)) == (1_003_854, 111_540)
    assert len(set(c.train + c.validation)) == 65
    assert c.source["sha256"] == sources.manifest()["tinyshakespeare"]["files"][0]["sha256"]
    assert c.source["path"] == str(SHAKESPEARE) and not (tmp_path / "downloads").exists()  # nothing fetched


def test_a_wrong_tinyshakespeare_file_is_refused_and_kept(monkeypatch, tmp_path):
    wrong = tmp_path / "input.txt"
    wrong.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    monkeypatch.setenv(SHAKESPEARE_ENV, str(wrong))
    with pytest.raises(DatasetError, match=rf"named by {SHAKESPEARE_ENV}\) is not Tiny Shakespeare") as e:
        tinyshakespeare(root=tmp_path)
    assert "\n" not in str(e.value) and wrong.exists()  # the user's file is theirs: refused, never deleted


def test_tinyshakespeare_is_not_downloaded_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv(SHAKESPEARE_ENV, raising=False)
    with pytest.raises(DatasetError, match="download=True"):
        tinyshakespeare(root=tmp_path)


@needs_shakespeare
def test_tinyshakespeare_download_goes_through_the_checked_machinery(monkeypatch, tmp_path):
    monkeypatch.delenv(SHAKESPEARE_ENV, raising=False)
    entry = {**sources.manifest()["tinyshakespeare"]["files"][0], "urls": [SHAKESPEARE.as_uri()]}
    monkeypatch.setattr(sources, "manifest", lambda: {"tinyshakespeare": {"files": [entry]}})
    c = tinyshakespeare(root=tmp_path, download=True)
    assert (tmp_path / "downloads" / "tinyshakespeare" / "input.txt").is_file() and len(c.validation) == 111_540


def test_the_manifest_names_the_real_file():
    (entry,) = sources.manifest()["tinyshakespeare"]["files"]
    assert entry["urls"] == [
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    ]
    assert entry["size"] == 1_115_394
    assert entry["sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


# ---------------------------------------------------------------- text:PATH


def _write_files(folder: Path, n: int) -> dict[str, str]:
    texts = {f"part{i // 10}/{i:02}.txt": f"text of file {i}\n" for i in range(n)}
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return texts


def test_text_file_is_split_by_characters(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 90 + "y" * 10)
    c = load_text_corpus(f"text:{tmp_path / 'a.txt'}")
    assert (c.train, c.validation) == ("x" * 90, "y" * 10)
    assert c.name == f"text:{tmp_path / 'a.txt'}" and c.source["bytes"] == 100


def test_text_folder_and_zip_are_split_by_file_alike(tmp_path):
    folder = tmp_path / "corpus"
    texts = _write_files(folder, 30)
    (folder / ".hidden.txt").write_bytes(b"\0 not read")
    archive = tmp_path / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in reversed(texts):  # stored out of order: the corpus is still in sorted order
            z.write(folder / name, name)
        z.writestr("__MACOSX/._00.txt", b"\0\1")
    from_folder, from_zip = text_file_corpus(folder), text_file_corpus(archive)
    assert (from_folder.train, from_folder.validation) == (from_zip.train, from_zip.validation)
    assert from_folder.source["files_sha256"] == from_zip.source["files_sha256"]
    validation = [n for n in sorted(texts) if in_validation(n)]
    assert from_folder.validation == "".join(texts[n] for n in validation) and validation
    assert from_folder.source["files"] == 30 and from_folder.source["validation_files"] == len(validation)


def test_two_files_still_give_both_sides_a_file(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.txt").write_text("beta\n")
    c = text_file_corpus(tmp_path)
    assert {c.train, c.validation} == {"alpha\n", "beta\n"}


@pytest.mark.parametrize(
    "member, problem",
    [("../outside.txt", "escapes the archive folder"), ("/etc/passwd", "is an absolute path")],
)
def test_a_zip_member_leaving_its_folder_is_refused(tmp_path, member, problem):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", "fine\n")
        z.writestr(zipfile.ZipInfo(member), "escaped\n")
    with pytest.raises(DatasetError, match=f"member '{member}' {problem}"):
        text_file_corpus(archive)


def test_a_zip_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    from workbench.data import text

    monkeypatch.setattr(text, "MAX_TEXT_BYTES", 1000)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", "a" * 5000)
    with pytest.raises(DatasetError, match="over the limit"):
        text_file_corpus(archive)


def test_empty_and_binary_files_are_refused_in_one_line(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DatasetError, match=r"empty\.txt is empty: pass text:PATH of a file with text"):
        text_file_corpus(tmp_path / "empty.txt")
    (tmp_path / "model.bin").write_bytes(b"PK\x03\x04\x00\x00\x01\x02")
    with pytest.raises(DatasetError, match=r"model\.bin is a binary file, not text") as e:
        text_file_corpus(tmp_path / "model.bin")
    assert "\n" not in str(e.value)
    folder = tmp_path / "mixed"
    _write_files(folder, 3)
    (folder / "part0" / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"part0/latin1\.txt in .*mixed is not valid UTF-8 text: byte offset 3"):
        text_file_corpus(folder)
    with pytest.raises(DatasetError, match="does not exist"):
        text_file_corpus(tmp_path / "absent")


# ---------------------------------------------------------------- tokenizers


def test_tokenizers_round_trip_stdlib_text(stdlib):
    sample = stdlib.validation[:200_000]
    for tok in (ByteTokenizer(), CharTokenizer.train(stdlib.train), BPETokenizer.train(stdlib.train[:300_000], 400)):
        unseen = set(sample) - set(tok.chars) if isinstance(tok, CharTokenizer) else set()
        text = "".join(c for c in sample if c not in unseen)
        ids = tok.encode(text)
        assert tok.decode(ids) == text and max(ids) < tok.vocab_size
        if isinstance(tok, BPETokenizer):  # code: indentation, blank lines, \r\n; cut into pieces, encoded alike
            assert ids == tok._tokenizer.encode(text).ids
        assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok


def test_tokenizers_round_trip_shakespeare(shakespeare):
    char = train_tokenizer("char", shakespeare.train)
    assert char.vocab_size == 65 and char.decode(char.encode(shakespeare.validation)) == shakespeare.validation
    bpe = train_tokenizer("bpe", shakespeare.train, vocab_size=512)
    ids = bpe.encode(shakespeare.validation)
    assert bpe.vocab_size == 512 and bpe.decode(ids) == shakespeare.validation
    assert len(ids) < 0.6 * len(shakespeare.validation.encode())  # merges make tokens longer than a byte
    # encode cuts the text into pieces for speed: the same ids as encoding it whole (blank lines included)
    assert ids == bpe._tokenizer.encode(shakespeare.validation).ids and "\n\n" in bpe.decode(ids[:100])


def test_bpe_round_trips_any_text_and_its_dict(tmp_path):
    bpe = BPETokenizer.train("def f(x):\n    return x + 1\n" * 50, vocab_size=300)
    assert 256 < bpe.vocab_size <= 300
    text = "naïve 🐍 code\r\n\tλx: x\x00\n"  # characters it never saw: bytes
    assert bpe.decode(bpe.encode(text)) == text
    saved = tmp_path / "tokenizer.json"
    saved.write_text(json.dumps(bpe.to_dict()))
    again = tokenizer_from_dict(json.loads(saved.read_text()))
    assert again == bpe and again.encode(text) == bpe.encode(text)
    assert bpe != BPETokenizer.train("other text " * 50, vocab_size=300)


def test_char_tokenizer_names_unseen_characters_and_bad_bytes():
    tok = train_tokenizer("char", "abc\n")
    with pytest.raises(ValueError, match=r"never saw 'x', 'é' in its training text"):
        tok.encode("abxé")
    with pytest.raises(DatasetError, match=r"not valid UTF-8 text: byte offset 2 \(0xff\)"):
        CharTokenizer.train(b"ab\xffcd")
    bad = b"abc\xe9".decode("utf-8", "surrogateescape")  # how a str can hold bytes that are not UTF-8
    with pytest.raises(DatasetError, match=r"byte offset 3 \(0xe9\)"):
        CharTokenizer.train(bad)
    with pytest.raises(DatasetError, match=r"byte offset 2 \(U\+D800\)"):
        tok.encode("é\ud800")
    with pytest.raises(ValueError, match=r"Token ids \[7\] are outside the char tokenizer's 4 ids"):
        tok.decode([0, 7])


def test_tokenizer_registry_and_settings():
    assert list_tokenizers() == ["bpe", "byte", "char"]
    assert train_tokenizer("byte", "anything") == ByteTokenizer() == tokenizer_from_dict({"name": "byte"})
    with pytest.raises(ValueError, match=r"Unknown tokenizer 'chars'\. Did you mean 'char'\?"):
        train_tokenizer("chars", "x")
    with pytest.raises(ValueError, match="vocab_size is a setting of the bpe tokenizer only"):
        train_tokenizer("char", "x", vocab_size=100)
    with pytest.raises(ValueError, match="vocab_size must be >= 256"):
        train_tokenizer("bpe", "x", vocab_size=100)
    assert CharTokenizer("ab") != CharTokenizer("abc") and CharTokenizer("ab") != ByteTokenizer()


def test_bits_per_byte_compares_tokenizers():
    # The same text, 1,000 bytes: a byte model at 1.0 nat a token vs a BPE model at 3.0 nats on 300 tokens.
    byte_bpb = bits_per_byte(1.0, n_tokens=1000, n_bytes=1000)
    bpe_bpb = bits_per_byte(3.0, n_tokens=300, n_bytes=1000)
    assert byte_bpb == pytest.approx(1 / math.log(2)) and bpe_bpb == pytest.approx(0.9 / math.log(2))
    assert bpe_bpb < byte_bpb  # the higher loss per token is the better model of the text
    assert perplexity(0.0) == 1.0 and perplexity(math.log(10)) == pytest.approx(10)
    with pytest.raises(ValueError, match="n_bytes > 0"):
        bits_per_byte(1.0, 10, 0)


def test_bpe_without_hugging_face_tokenizers_names_the_extra(monkeypatch):
    monkeypatch.setattr("workbench._errors.has_module", lambda name: False)
    with pytest.raises(ImportError, match=r"The bpe tokenizer needs tokenizers: pip install 'workbench\[lm\]'"):
        train_tokenizer("bpe", "some text")
    assert train_tokenizer("char", "some text").vocab_size == 7  # the others need nothing


@needs_shakespeare
def test_the_cli_fetch_the_download_message_names_takes_tinyshakespeare(tmp_path, capsys):
    """A failed download says `workbench datasets fetch tinyshakespeare`; that command takes the name, and a
    copy already in its place is checked, not fetched again."""
    from workbench.cli import main

    folder = tmp_path / "downloads" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_bytes(SHAKESPEARE.read_bytes())
    assert main(["datasets", "fetch", "tinyshakespeare", "--root", str(tmp_path)]) == 0
    assert str(folder) in capsys.readouterr().out
    assert tinyshakespeare(root=tmp_path).source["path"] == str(folder / "input.txt")
