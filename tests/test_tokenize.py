"""The GPT-2 tokenizer works offline from the verified local vocabulary."""
import pytest

from pipeline.shards import tokenize


def test_known_ids_and_eot():
    assert tokenize.encode_document("hello world") == [31373, 995, tokenize.EOT]
    assert tokenize.decode(tokenize.encode_document("naïve café — ok")[:-1]) == "naïve café — ok"


def test_special_token_text_stays_text():
    tokens = tokenize.encode_document("a <|endoftext|> b")
    assert tokens.count(tokenize.EOT) == 1 and tokens[-1] == tokenize.EOT


def test_wrong_vocab_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setenv(tokenize.ENV_VAR, str(bad))
    tokenize.get_encoding.cache_clear()
    try:
        with pytest.raises(tokenize.TokenizerUnavailable, match="sha256"):
            tokenize.get_encoding()
    finally:
        monkeypatch.delenv(tokenize.ENV_VAR)
        tokenize.get_encoding.cache_clear()
