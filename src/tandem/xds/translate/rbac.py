"""Dapr ``accessControl`` of the callee → Envoy RBAC (matcher form) on its inbound listener.

The caller is whoever the client certificate says it is: its URI SAN (the SPIFFE id
``spiffe://{trustDomain}/ns/{namespace}/{appId}`` of a policy), never a header.

Dapr's decision, reproduced as an ordered matcher list (first match wins):
- per policy (one caller), its operations from the most specific to the least: at each
  path segment a literal beats ``*``, which beats ``**``. The most specific operation
  whose path matches decides:
    - path and verb match → the operation's action;
    - path matches but the verb is not listed → the policy's default action (Dapr does
      not fall back to a less specific operation);
- the caller matches no operation → the policy's ``defaultAction`` (or the global one);
- no policy names the caller (or there is no client certificate) → the global
  ``defaultAction``.

Operation names are path globs on the method path the app sees (``:path`` without its
query): ``*`` is one segment, ``**`` any number of segments (also none).

For HTTP apps the match ignores case, as Dapr's does (it lower-cases rule and request), so
a deny on ``/admin/**`` also stops ``/ADMIN/x`` and ``/Admin/x`` at an app whose router
ignores case. The path the RBAC filter sees is already normalised by the listener
(``normalize_path``: dot segments removed and percent-encoded unreserved characters
decoded, so ``/%41DMIN/x`` arrives as ``/ADMIN/x``; ``merge_slashes``). gRPC method names
stay case-sensitive, as in Dapr.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TypeAlias

from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.matching.common_inputs.ssl.v3 import ssl_inputs_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2, regex_pb2, string_pb2

from tandem.resources import AccessControl, AppPolicy, OperationRule
from tandem.xds.translate._protos import pack

RBAC_FILTER = "envoy.filters.http.rbac"

_Matcher: TypeAlias = matcher_pb2.Matcher
_Predicate: TypeAlias = matcher_pb2.Matcher.MatcherList.Predicate
_OnMatch: TypeAlias = matcher_pb2.Matcher.OnMatch
_FieldMatcher: TypeAlias = matcher_pb2.Matcher.MatcherList.FieldMatcher
_ALLOW = rbac_config_pb2.RBAC.ALLOW
_DENY = rbac_config_pb2.RBAC.DENY


def spiffe_of(policy: AppPolicy) -> str:
    return f"spiffe://{policy.trust_domain}/ns/{policy.namespace}/{policy.app_id}"


def _segments(name: str) -> list[str]:
    # Dapr reads "op1" and "/op1" alike.
    return ("/" + name.lstrip("/")).split("/")[1:]


def glob_regex(name: str, ignore_case: bool = False) -> str:
    """RE2 for an operation glob, matching the whole ``:path`` with or without a query."""
    parts = []
    for segment in _segments(name):
        if segment == "**":
            parts.append("(?:/[^?]*)?")
        elif segment == "*":
            parts.append("/[^/?]+")
        else:
            parts.append("/" + re.escape(segment))
    flags = "(?i)" if ignore_case else ""
    return flags + "^" + "".join(parts) + r"(?:\?.*)?$"


def _specificity(op: OperationRule) -> tuple[int, ...]:
    """Sort key: literal (0) before ``*`` (1) before ``**`` (2), segment by segment."""
    return tuple(2 if s == "**" else 1 if s == "*" else 0 for s in _segments(op.name))


def ordered_operations(operations: Sequence[OperationRule]) -> list[OperationRule]:
    """Most specific first; equally specific ones keep their order in the YAML."""
    return sorted(operations, key=_specificity)


def _input(name: str, config: object) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(config))  # type: ignore[arg-type]


def _caller(spiffe: str) -> _Predicate:
    return _Predicate(
        single_predicate=_Predicate.SinglePredicate(
            input=_input("envoy.matching.inputs.uri_san", ssl_inputs_pb2.UriSanInput()),
            value_match=string_pb2.StringMatcher(exact=spiffe),
        )
    )


def _header_regex(header: str, pattern: str) -> _Predicate:
    return _Predicate(
        single_predicate=_Predicate.SinglePredicate(
            input=_input(
                "envoy.matching.inputs.request_headers",
                http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=header),
            ),
            value_match=string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(
                    google_re2=regex_pb2.RegexMatcher.GoogleRE2(), regex=pattern
                )
            ),
        )
    )


def _all(*predicates: _Predicate) -> _Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return _Predicate(and_matcher=_Predicate.PredicateList(predicate=list(predicates)))


def _on_match(name: str, action: str) -> _OnMatch:
    rbac_action = rbac_config_pb2.Action(name=name, action=_ALLOW if action == "allow" else _DENY)
    return _OnMatch(
        action=extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(rbac_action))
    )


def _rule(predicate: _Predicate, name: str, action: str) -> _FieldMatcher:
    return _FieldMatcher(predicate=predicate, on_match=_on_match(name, action))


def _policy_rules(
    policy: AppPolicy, global_default: str, ignore_case: bool
) -> Iterator[_FieldMatcher]:
    caller = spiffe_of(policy)
    fallback = policy.default_action or global_default
    for op in ordered_operations(policy.operations):
        path = _header_regex(":path", glob_regex(op.name, ignore_case))
        if "*" in op.http_verbs:
            yield _rule(
                _all(_caller(caller), path), f"{op.action}:{policy.app_id}:{op.name}", op.action
            )
            continue
        verbs = "|".join(re.escape(v) for v in op.http_verbs)
        yield _rule(
            _all(_caller(caller), path, _header_regex(":method", f"^(?:{verbs})$")),
            f"{op.action}:{policy.app_id}:{op.name}:{','.join(op.http_verbs)}",
            op.action,
        )
        # The most specific matching operation decides even when the verb is not listed.
        yield _rule(
            _all(_caller(caller), path),
            f"{fallback}:{policy.app_id}:{op.name}:other-verbs",
            fallback,
        )
    yield _rule(_caller(caller), f"{fallback}:{policy.app_id}", fallback)


def rbac_filter(access: AccessControl, http_app: bool = True) -> rbac_pb2.RBAC:
    """``http_app``: paths match case-insensitively (Dapr's rule for HTTP apps)."""
    rules = [
        rule
        for policy in access.policies
        for rule in _policy_rules(policy, access.default_action, ignore_case=http_app)
    ]
    matcher = _Matcher(
        on_no_match=_on_match(f"{access.default_action}:default", access.default_action)
    )
    if rules:
        matcher.matcher_list.CopyFrom(_Matcher.MatcherList(matchers=rules))
    return rbac_pb2.RBAC(matcher=matcher)
