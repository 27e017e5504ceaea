"""Third-party clients against a running gateway, run in their own virtualenv (.venv-compat: litellm and
langchain-openai pin versions of the openai SDK and others that the application's would fight).

    .venv-compat/bin/python tests/support/compat_clients.py <client> <base_url> <api_key> <model> <embedding_model>

Prints one JSON object: what each call returned, or the exception class it raised. The caller
(tests/integration/test_client_compat.py) asserts on it and on what the loopback upstream received.
This file imports nothing of the project: it runs where the project is not installed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

QUESTION = "How are API keys rotated?"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _error(err: BaseException) -> dict[str, Any]:
    return {"error": type(err).__name__, "classes": [c.__name__ for c in type(err).__mro__],
            "status": getattr(err, "status_code", None)}


def run_litellm(base_url: str, key: str, model: str, embedding_model: str) -> dict[str, Any]:
    import litellm

    common = {"api_base": f"{base_url}/v1", "api_key": key, "num_retries": 0}
    out: dict[str, Any] = {}
    plain = litellm.completion(model=f"openai/{model}", messages=[{"role": "user", "content": QUESTION}],
                               temperature=0.2, max_tokens=50, stop=["\n\n"], seed=7, user="u-1", **common)
    out["plain"] = {"text": plain.choices[0].message.content, "finish": plain.choices[0].finish_reason,
                    "usage": plain.usage.total_tokens}
    chunks = litellm.completion(model=f"openai/{model}", messages=[{"role": "user", "content": "stream this please"}],
                                stream=True, stream_options={"include_usage": True}, **common)
    text, usage = "", None
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if getattr(chunk, "usage", None):
            usage = chunk.usage.total_tokens
    out["stream"] = {"text": text, "usage": usage}
    tools = litellm.completion(model=f"openai/{model}", messages=[{"role": "user", "content": "get_weather for Oslo"}],
                               tools=[WEATHER], tool_choice="required", **common)
    call = tools.choices[0].message.tool_calls[0]
    out["tools"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
                    "finish": tools.choices[0].finish_reason}
    try:
        litellm.completion(model="openai/no-such-model", messages=[{"role": "user", "content": "hi"}], **common)
        out["not_found"] = {"error": None}
    except Exception as err:  # noqa: BLE001 - the class is the answer
        out["not_found"] = _error(err)
    vectors = litellm.embedding(model=f"openai/{embedding_model}", input=["first text", "second text"], **common)
    out["embedding"] = {"count": len(vectors.data), "dimensions": len(vectors.data[0]["embedding"])}
    return out


def run_langchain(base_url: str, key: str, model: str, embedding_model: str) -> dict[str, Any]:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from pydantic import BaseModel

    llm = ChatOpenAI(model=model, base_url=f"{base_url}/v1", api_key=key, temperature=0.2, max_tokens=50,
                     stop=["\n\n"], max_retries=0)
    out: dict[str, Any] = {}
    answer = llm.invoke(QUESTION)
    out["plain"] = {"text": answer.content, "usage": (answer.usage_metadata or {}).get("total_tokens")}
    out["stream"] = {"text": "".join(str(c.content) for c in llm.stream("stream this please"))}
    called = llm.bind_tools([WEATHER], tool_choice="required").invoke("get_weather for Oslo")
    out["tools"] = {"name": called.tool_calls[0]["name"], "arguments": called.tool_calls[0]["args"]}

    class Answer(BaseModel):
        answer: str
        confidence: int

    parsed = llm.with_structured_output(Answer, method="json_schema").invoke("Reply in JSON please")
    out["structured"] = parsed.model_dump() if isinstance(parsed, BaseModel) else parsed
    try:
        ChatOpenAI(model="no-such-model", base_url=f"{base_url}/v1", api_key=key, max_retries=0).invoke("hi")
        out["not_found"] = {"error": None}
    except Exception as err:  # noqa: BLE001 - the class is the answer
        out["not_found"] = _error(err)
    embedder = OpenAIEmbeddings(model=embedding_model, base_url=f"{base_url}/v1", api_key=key,
                                check_embedding_ctx_length=False, max_retries=0)
    vectors = embedder.embed_documents(["first text", "second text"])
    out["embedding"] = {"count": len(vectors), "dimensions": len(vectors[0])}
    return out


if __name__ == "__main__":
    client, base, api_key, chat_model, embed_model = sys.argv[1:6]
    runner = {"litellm": run_litellm, "langchain": run_langchain}[client]
    print(json.dumps(runner(base, api_key, chat_model, embed_model)))
