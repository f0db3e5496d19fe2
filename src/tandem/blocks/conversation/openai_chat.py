"""``conversation.openai``: any endpoint that speaks OpenAI's Chat Completions (OpenAI, Azure
OpenAI, or a local Ollama / llama.cpp / vLLM server via ``endpoint``), through the ``openai``
client library.

The client's own retries are off: the sidecar's Resiliency policy is the one retry loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from tandem.blocks.component_metadata import ComponentConfigError, as_seconds, lookup
from tandem.blocks.conversation.component import ProviderError, warn_unknown
from tandem.blocks.conversation.echo import COMMON_METADATA
from tandem.blocks.conversation.model import (
    Choice,
    Message,
    Request,
    Result,
    Role,
    Tool,
    ToolCall,
    Usage,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec

DEFAULT_MODEL = "gpt-4o"
_METADATA = ("key", "model", "endpoint", "apiType", "apiVersion", "timeout", *COMMON_METADATA)
# OpenAI's two retention classes; a longer retention than the in-memory default asks for 24h.
_EXTENDED_RETENTION_SECONDS = 3600.0


def create(spec: ComponentSpec, ctx: ComponentContext) -> OpenAIConversation:
    md = spec.metadata
    warn_unknown(spec.name, spec.type, md, _METADATA)
    key = lookup(md, "key") or ""
    endpoint = lookup(md, "endpoint") or None
    timeout = as_seconds("timeout", lookup(md, "timeout"), 600.0)
    api_type = (lookup(md, "apiType") or "").lower()
    client: openai.AsyncOpenAI
    if api_type == "azure":
        version = lookup(md, "apiVersion")
        if not endpoint or not version:
            raise ComponentConfigError(
                f"component {spec.name}: apiType azure needs endpoint and apiVersion"
            )
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint,
            api_key=key,
            api_version=version,
            max_retries=0,
            timeout=timeout,
        )
    elif api_type not in ("", "openai"):
        raise ComponentConfigError(f"component {spec.name}: unknown apiType {api_type!r}")
    else:
        if not key and endpoint is None:
            raise ComponentConfigError(f"component {spec.name}: metadata key is required")
        # Local servers take any key; the library refuses an empty one.
        client = openai.AsyncOpenAI(
            api_key=key or "unused", base_url=endpoint, max_retries=0, timeout=timeout
        )
    return OpenAIConversation(client, lookup(md, "model") or DEFAULT_MODEL)


def message_param(m: Message) -> dict[str, Any]:
    """One message in the Chat Completions request format."""
    out: dict[str, Any] = {"role": m.role.value}
    if m.role is Role.TOOL:
        out["tool_call_id"] = m.tool_call_id or ""
        out["content"] = m.text
        return out
    if m.role is Role.ASSISTANT and m.tool_calls:
        out["content"] = m.text or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    else:
        out["content"] = m.text
    if m.name:
        out["name"] = m.name
    return out


def tool_param(t: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": dict(t.parameters)}
    if t.description:
        fn["description"] = t.description
    return {"type": "function", "function": fn}


def tool_choice_param(choice: str) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def response_format_param(fmt: Mapping[str, Any]) -> dict[str, Any]:
    """Dapr's ``responseFormat`` is a JSON Schema; an OpenAI-shaped format passes as is."""
    kind = fmt.get("type")
    if kind in ("json_object", "text") or (kind == "json_schema" and "json_schema" in fmt):
        return dict(fmt)
    return {
        "type": "json_schema",
        "json_schema": {"name": str(fmt.get("title") or "response"), "schema": dict(fmt)},
    }


def request_params(request: Request, model: str) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for ``request``."""
    params: dict[str, Any] = {
        "model": model,
        "messages": [message_param(m) for m in request.messages],
    }
    if request.tools:
        params["tools"] = [tool_param(t) for t in request.tools]
    if request.tool_choice:
        params["tool_choice"] = tool_choice_param(request.tool_choice)
    if request.response_format is not None:
        params["response_format"] = response_format_param(request.response_format)
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.max_tokens is not None:
        params["max_completion_tokens"] = request.max_tokens
    if request.prompt_cache_retention is not None:
        params["prompt_cache_retention"] = (
            "24h" if request.prompt_cache_retention > _EXTENDED_RETENTION_SECONDS else "in_memory"
        )
    if request.parameters:
        # Provider-specific knobs (e.g. top_p, seed) travel as extra request fields.
        params["extra_body"] = dict(request.parameters)
    return params


def result_of(completion: Any) -> Result:
    """A ``ChatCompletion`` as the block's result."""
    choices = []
    for c in completion.choices:
        calls = tuple(
            ToolCall(t.id, t.function.name, t.function.arguments)
            for t in (c.message.tool_calls or ())
            if getattr(t, "function", None) is not None
        )
        choices.append(Choice(c.index, c.message.content or "", c.finish_reason or "", calls))
    usage = None
    u = completion.usage
    if u is not None:
        cached = getattr(u.prompt_tokens_details, "cached_tokens", None) or 0
        reasoning = getattr(u.completion_tokens_details, "reasoning_tokens", None) or 0
        usage = Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, cached, reasoning)
    return Result(tuple(choices), completion.model or None, usage)


class OpenAIConversation:
    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self._client = client
        self.model = model

    async def converse(self, request: Request) -> Result:
        try:
            completion = await self._client.chat.completions.create(
                **request_params(request, self.model)
            )
        except openai.APIStatusError as exc:
            # A refused request (bad input, auth) is an answer; overload and 5xx are failures.
            retriable = exc.status_code >= 500 or exc.status_code in (408, 429)
            raise ProviderError(f"{exc.status_code}: {exc.message}", retriable) from exc
        except openai.APIError as exc:
            raise ProviderError(str(exc), True) from exc
        return result_of(completion)

    async def close(self) -> None:
        await self._client.close()
