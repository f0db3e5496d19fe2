"""The conversation block's own request and result, independent of the wire (HTTP, gRPC).

Both API versions end here: alpha1's inputs become user/system/assistant messages, alpha2's
messages map one to one. Roles follow the OpenAI chat format the components speak.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Role(enum.Enum):
    DEVELOPER = "developer"
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asks for (or an assistant message recalls)."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # a tool message answers this call


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)  # JSON Schema


@dataclass(frozen=True, slots=True)
class Request:
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # "none" | "auto" | "required" | a tool's name
    response_format: Mapping[str, Any] | None = None  # JSON Schema of the answer
    temperature: float | None = None
    max_tokens: int | None = None
    # Seconds the provider should keep the prompt's cached prefix (``promptCacheRetention``).
    prompt_cache_retention: float | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    text: str
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    choices: tuple[Choice, ...]
    model: str | None = None
    usage: Usage | None = None
