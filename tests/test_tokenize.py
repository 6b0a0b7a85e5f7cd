"""The GPT-2 tokenizer works offline from the verified local vocabulary."""
import pytest

from core import tokenizer


def test_known_ids_and_eot():
    assert tokenizer.encode_document("hello world") == [31373, 995, tokenizer.EOT]
    assert tokenizer.decode(tokenizer.encode_document("naïve café — ok")[:-1]) == "naïve café — ok"


def test_special_token_text_stays_text():
    tokens = tokenizer.encode_document("a <|endoftext|> b")
    assert tokens.count(tokenizer.EOT) == 1 and tokens[-1] == tokenizer.EOT


def test_wrong_vocab_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setenv(tokenizer.ENV_VAR, str(bad))
    tokenizer.get_encoding.cache_clear()
    try:
        with pytest.raises(tokenizer.TokenizerUnavailable, match="sha256"):
            tokenizer.get_encoding()
    finally:
        monkeypatch.delenv(tokenizer.ENV_VAR)
        tokenizer.get_encoding.cache_clear()
