"""Drives scot's HTTP API with the real `openai` client library (run by tests/http_openai_client.rs).

Usage: python openai_client_check.py BASE_URL MODEL
Checks the non-streaming and the streaming chat completion (content, reasoning_content, usage, scot
stats), /v1/models, and OpenAI-style 400/404 errors. Prints one JSON summary line; exits non-zero on
failure.
"""

import json
import sys

import openai

PATHS = {"draft_accepted", "target_correction", "target_fallback"}
EXTRA = {
    "n_drafts": 2,
    "scot": {"draft_max_tokens": 64, "thinking_max_tokens": 64},
}
MESSAGES = [
    {"role": "system", "content": "You are a careful math tutor."},
    {"role": "user", "content": "What is 7 + 5? Answer with the number."},
]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_scot(scot, where):
    check(isinstance(scot, dict), f"{where}: no scot object: {scot!r}")
    check(scot["path"] in PATHS, f"{where}: unexpected path {scot['path']!r}")
    check(scot["path"] != "target_fallback", f"{where}: the draft node was not used: {scot}")
    check(scot["timings_ms"]["total"] > 0, f"{where}: no total time: {scot}")
    check(scot["draft_tokens"] > 0, f"{where}: no draft tokens counted: {scot}")
    check(scot["n_drafts"] == 2, f"{where}: expected 2 drafts: {scot}")
    check(len(scot["drafts"]) == 2, f"{where}: expected 2 draft records: {scot}")
    check(scot["timings_ms"]["draft"] > 0, f"{where}: no draft time: {scot}")
    check(scot["chosen"] is not None, f"{where}: no selection: {scot}")
    offered = sum(1 for d in scot["drafts"] if d["offered"])
    check(1 <= scot["chosen"] <= offered + 1, f"{where}: chosen out of range: {scot}")
    check(len(scot["option_probs"]) == offered + 1, f"{where}: option_probs: {scot}")
    check(abs(sum(scot["option_probs"]) - 1.0) < 1e-3, f"{where}: option_probs sum: {scot}")
    check(scot["timings_ms"]["select"] > 0, f"{where}: no select time: {scot}")
    if scot["path"] == "draft_accepted":
        check(scot["chosen_draft"] is not None, f"{where}: accepted without a draft: {scot}")
    else:
        check(scot["target_thinking_tokens"] > 0, f"{where}: correction without thinking: {scot}")


def check_usage(usage, where):
    check(usage is not None, f"{where}: no usage")
    check(usage.prompt_tokens > 0, f"{where}: prompt_tokens {usage}")
    check(usage.completion_tokens > 0, f"{where}: completion_tokens {usage}")
    check(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"{where}: total_tokens {usage}",
    )


def non_streaming(client, model):
    response = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=48, seed=3, temperature=0.6, extra_body=EXTRA
    )
    check(response.object == "chat.completion", f"object {response.object!r}")
    check(len(response.choices) == 1, "one choice")
    choice = response.choices[0]
    message = choice.message
    check(message.role == "assistant", f"role {message.role!r}")
    check(isinstance(message.content, str) and message.content.strip(), f"empty content: {response}")
    reasoning = getattr(message, "reasoning_content", None)
    check(isinstance(reasoning, str) and reasoning.strip(), f"no reasoning_content: {response}")
    check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason!r}")
    check_usage(response.usage, "non-streaming")
    scot = getattr(response, "scot", None)
    check_scot(scot, "non-streaming")
    check(response.usage.completion_tokens >= scot["answer_tokens"], "completion counts the answer")
    return {"path": scot["path"], "content": message.content, "reasoning_chars": len(reasoning)}


def streaming(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=48,
        seed=4,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXTRA,
    )
    reasoning, content, order = [], [], []
    finish, scot, usage, chunks = None, None, None, 0
    for chunk in stream:
        chunks += 1
        check(chunk.object == "chat.completion.chunk", f"chunk object {chunk.object!r}")
        if chunk.usage is not None:
            check(not chunk.choices, "the usage chunk has no choices")
            usage = chunk.usage
            continue
        delta = chunk.choices[0].delta
        piece = getattr(delta, "reasoning_content", None)
        if piece:
            reasoning.append(piece)
            order.append("r")
        if delta.content:
            content.append(delta.content)
            order.append("c")
        if chunk.choices[0].finish_reason is not None:
            finish = chunk.choices[0].finish_reason
            scot = getattr(chunk, "scot", None)
    text, thought = "".join(content), "".join(reasoning)
    check(text.strip(), f"no streamed content ({chunks} chunks)")
    check(thought.strip(), f"no streamed reasoning_content ({chunks} chunks)")
    check("r" not in order[order.index("c"):], f"reasoning after content: {order}")
    check(finish in ("stop", "length"), f"finish_reason {finish!r}")
    check_usage(usage, "streaming")
    check_scot(scot, "streaming")
    return {"path": scot["path"], "content": text, "chunks": chunks}


def errors(client, model):
    try:
        client.chat.completions.create(model=model, messages=MESSAGES, n=2)
    except openai.BadRequestError as error:
        check(error.status_code == 400, f"status {error.status_code}")
        body = error.body
        check(body.get("param") == "n", f"error body {body!r}")
        check(body.get("type") == "invalid_request_error", f"error body {body!r}")
    else:
        raise AssertionError("n=2 was accepted")
    try:
        client.chat.completions.create(model="not-" + model, messages=MESSAGES)
    except openai.NotFoundError as error:
        check(error.body.get("code") == "model_not_found", f"error body {error.body!r}")
    else:
        raise AssertionError("an unknown model was accepted")


def main():
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="unused", timeout=900, max_retries=0)
    ids = [m.id for m in client.models.list().data]
    check(model in ids, f"/v1/models lists {ids}")
    errors(client, model)
    summary = {"non_streaming": non_streaming(client, model), "streaming": streaming(client, model)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
