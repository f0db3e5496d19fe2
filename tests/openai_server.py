"""A small server speaking OpenAI's Chat Completions wire format, for ``conversation.openai``.

Its answers are built with the ``openai`` library's own response types, so they are what the
client library expects from a real provider. Behaviour is chosen by the last user message:

- ``weather in <place>`` with tools offered: a call of the first tool with ``{"location": place}``;
- ``flaky <anything>``: the first request with that text fails with 503, the next succeeds;
- ``refuse``: 400 (a refusal the sidecar must not retry);
- anything else: ``you said: <text>``.

Every request body is recorded in ``requests`` (what the sidecar sent).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.completion_usage import CompletionUsage, PromptTokensDetails

MODEL = "tiny-local-model"


class OpenAIServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = server.answer(self.path, body)
                data = answer.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        with self._lock:
            self.requests.append(body)
        if path != "/v1/chat/completions":
            return 404, json.dumps({"error": {"message": f"no route {path}"}})
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = str(users[-1]["content"]) if users else ""
        if text == "refuse":
            return 400, json.dumps({"error": {"message": "refused", "type": "invalid_request"}})
        if text.startswith("flaky"):
            with self._lock:
                first = text not in self._failed
                self._failed.add(text)
            if first:
                return 503, json.dumps({"error": {"message": "overloaded", "type": "server"}})
        tools = body.get("tools") or []
        if text.startswith("weather in ") and tools:
            call = ChatCompletionMessageFunctionToolCall(
                id="call_1",
                type="function",
                function=Function(
                    name=tools[0]["function"]["name"],
                    arguments=json.dumps({"location": text.removeprefix("weather in ")}),
                ),
            )
            message = ChatCompletionMessage(role="assistant", content=None, tool_calls=[call])
            finish = "tool_calls"
        else:
            message = ChatCompletionMessage(role="assistant", content=f"you said: {text}")
            finish = "stop"
        completion = ChatCompletion(
            id="chatcmpl-1",
            object="chat.completion",
            created=1,
            model=MODEL,
            choices=[Choice(index=0, message=message, finish_reason=finish)],
            usage=CompletionUsage(
                prompt_tokens=7,
                completion_tokens=5,
                total_tokens=12,
                prompt_tokens_details=PromptTokensDetails(cached_tokens=3),
            ),
        )
        return 200, completion.model_dump_json(exclude_none=True)


def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()
