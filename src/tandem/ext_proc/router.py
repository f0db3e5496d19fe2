"""Maps (method, path) to a handler.

Patterns are literal segments and ``{name}`` parameters; a final ``{name...}`` takes the rest
of the path (Dapr's topic and method names may contain ``/``). Lookups walk a tree of
segments, so the cost grows with path depth, not with the number of routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, Handler, path_segment


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: tuple[str, _Node] | None = None
    rest: tuple[str, dict[str, Handler]] | None = None
    handlers: dict[str, Handler] = field(default_factory=dict)


class Router:
    def __init__(self) -> None:
        self._root = _Node()

    def add(self, methods: str | tuple[str, ...], pattern: str, handler: Handler) -> None:
        if isinstance(methods, str):
            methods = (methods,)
        node = self._root
        segments = [s for s in pattern.strip("/").split("/") if s]
        for i, seg in enumerate(segments):
            if seg.startswith("{") and seg.endswith("...}"):
                if i != len(segments) - 1:
                    raise ValueError(f"{pattern}: a rest parameter must come last")
                name = seg[1:-4]
                if node.rest is None:
                    node.rest = (name, {})
                elif node.rest[0] != name:
                    raise ValueError(f"{pattern}: parameter {name} clashes with {node.rest[0]}")
                for m in methods:
                    node.rest[1][m] = handler
                return
            if seg.startswith("{") and seg.endswith("}"):
                name = seg[1:-1]
                if node.param is None:
                    node.param = (name, _Node())
                elif node.param[0] != name:
                    raise ValueError(f"{pattern}: parameter {name} clashes with {node.param[0]}")
                node = node.param[1]
            else:
                node = node.literal.setdefault(seg, _Node())
        for m in methods:
            node.handlers[m] = handler

    def resolve(self, req: ApiRequest) -> Handler:
        """Find the handler and fill ``req.params``; Dapr-shaped errors when nothing matches.

        A path whose literal branch lacks the method falls back to a parameter branch (GET of
        a state key named ``bulk`` is a key lookup), so the walk backtracks on method too.
        """
        segments = req.path.strip("/").split("/")
        path_seen: list[bool] = [False]
        handler = self._walk(self._root, segments, 0, req.method, req.params, path_seen)
        if handler is not None:
            return handler
        if path_seen[0]:
            raise DaprError(
                "ERR_BAD_REQUEST",
                f"method {req.method} not allowed for {req.path}",
                http_status=405,
            )
        raise DaprError("ERR_BAD_REQUEST", f"no route for {req.method} {req.path}", http_status=404)

    def _walk(
        self,
        node: _Node,
        segs: list[str],
        i: int,
        method: str,
        params: dict[str, str],
        path_seen: list[bool],
    ) -> Handler | None:
        if i == len(segs):
            if node.handlers:
                path_seen[0] = True
            return node.handlers.get(method)
        seg = segs[i]
        child = node.literal.get(seg)
        if child is not None:
            found = self._walk(child, segs, i + 1, method, params, path_seen)
            if found is not None:
                return found
        if node.param is not None and seg:
            name, child = node.param
            found = self._walk(child, segs, i + 1, method, params, path_seen)
            if found is not None:
                params[name] = path_segment(seg)
                return found
        if node.rest is not None:
            name, handlers = node.rest
            path_seen[0] = True
            rest_handler = handlers.get(method)
            if rest_handler is not None:
                params[name] = path_segment("/".join(segs[i:]))
            return rest_handler
        return None
