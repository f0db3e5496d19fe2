"""``conversation.echo``: Dapr's test component, answering with what it was sent.

Each message of the conversation comes back as one choice, in order: its text (for a tool
message, the tool's result) and, for an assistant message, its tool calls. Usage counts one
token per four characters (at least one per message), so clients that read usage see numbers.
"""

from __future__ import annotations

from tandem.blocks.component_metadata import lookup
from tandem.blocks.conversation.component import warn_unknown
from tandem.blocks.conversation.model import Choice, Request, Result, Usage
from tandem.blocks.registry import ComponentContext, ComponentSpec

# Metadata every conversation component reads; cacheTTL is the service's response cache.
COMMON_METADATA = ("cacheTTL",)


def create(spec: ComponentSpec, ctx: ComponentContext) -> EchoConversation:
    warn_unknown(spec.name, spec.type, spec.metadata, ("model", *COMMON_METADATA))
    return EchoConversation(model=lookup(spec.metadata, "model") or "echo")


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class EchoConversation:
    def __init__(self, model: str = "echo") -> None:
        self.model = model

    async def converse(self, request: Request) -> Result:
        choices = tuple(
            Choice(
                index=i,
                text=m.text,
                finish_reason="tool_calls" if m.tool_calls else "stop",
                tool_calls=m.tool_calls,
            )
            for i, m in enumerate(request.messages)
        )
        prompt = sum(_tokens(m.text) for m in request.messages)
        completion = sum(_tokens(c.text) for c in choices)
        return Result(choices, self.model, Usage(prompt, completion, prompt + completion))

    async def close(self) -> None:
        return None
