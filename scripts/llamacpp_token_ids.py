#!/usr/bin/env python3
"""Prints llama.cpp's token ids for the strings pinned in engine/tests/tokenizer.rs.

Usage (llama-cpp-python 0.3.36 in a venv outside the repo, see scripts/bench-engine.sh):
    /root/.cache/scot/llama-venv/bin/python scripts/llamacpp_token_ids.py ~/.cache/scot/models/X.gguf

For every string it calls Llama(model_path, vocab_only=True).tokenize(text.encode(), add_bos=False,
special=S) with S = False for plain text and S = True for the chat-formatted strings (whose <|im_start|>
must become control tokens), and prints Rust `(text, &[ids])` entries to paste into the test.
"""
import json
import sys

from llama_cpp import Llama

PLAIN = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog 1234567890.",
    "日本語のテキストと中文文本",
    "emoji: 😀👍🏽🇫🇷 ok",
    r"$\frac{a^2 + b^2}{\sqrt{c}} = \int_0^\infty e^{-x} dx$",
    "a    b\t\tc   \n\n\n  d  ",
    "line1\nline2\r\nline3\n",
    "  leading and trailing spaces  ",
    "don't won't I'LL we've",
    "def f(x):\n    return x ** 2  # square\n",
    "Ünïcödé ñ café naïve",
    "3.14159 + 2 = 5.14159; 1,000,000",
    'call <tool_call>{"a": 1}</tool_call>',
    "[PAD151665] x",
]
SPECIAL = [
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]


def rust_str(s: str) -> str:
    # json.dumps with ensure_ascii=False escapes ", \\ and control chars the way Rust string literals do
    return json.dumps(s, ensure_ascii=False)


def main() -> None:
    llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
    for special, texts in ((False, PLAIN), (True, SPECIAL)):
        print(f"// special = {special}")
        for text in texts:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            print(f"    ({rust_str(text)}, &{ids}),")


if __name__ == "__main__":
    main()
