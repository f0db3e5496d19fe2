"""Operation globs and their order: the most specific operation decides, as in Dapr."""

from __future__ import annotations

import re

import pytest

from tandem.resources import OperationRule
from tandem.xds.translate.rbac import glob_regex, ordered_operations


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("/op1", ["/op1", "/op1?x=1", "op1"], ["/op1/x", "/op10", "/xop1"]),
        ("/op2/*", ["/op2/a", "/op2/a?q=/x"], ["/op2", "/op2/", "/op2/a/b"]),
        ("/op3/**", ["/op3", "/op3/", "/op3/a/b/c", "/op3/a?x=y"], ["/op30", "/op"]),
        ("/a.b/c+d", ["/a.b/c+d"], ["/aXb/c+d", "/a.b/cd"]),
    ],
)
def test_globs_match_whole_method_paths_with_or_without_a_query(
    glob: str, matches: list[str], misses: list[str]
) -> None:
    pattern = re.compile(glob_regex(glob))
    for path in matches:
        assert pattern.match("/" + path.lstrip("/")), path
    for path in misses:
        assert not pattern.match("/" + path.lstrip("/")), path


def test_operations_are_ordered_literal_before_star_before_double_star() -> None:
    names = ["/**", "/a/**", "/a/*", "/*/b", "/a/b", "/a/*/c"]
    ordered = ordered_operations([OperationRule(name=n, action="allow") for n in names])

    assert [op.name for op in ordered] == ["/a/b", "/a/*", "/a/*/c", "/a/**", "/*/b", "/**"]


def test_for_any_path_the_first_matching_operation_is_the_most_specific() -> None:
    names = ["/orders/**", "/orders/*", "/orders/audit", "/orders/audit/*"]
    ordered = ordered_operations([OperationRule(name=n, action="allow") for n in names])

    def first(path: str) -> str:
        return next(op.name for op in ordered if re.match(glob_regex(op.name), path))

    assert first("/orders/audit") == "/orders/audit"
    assert first("/orders/7") == "/orders/*"
    assert first("/orders/audit/2026") == "/orders/audit/*"
    assert first("/orders/7/lines") == "/orders/**"


def test_http_apps_match_paths_ignoring_case_grpc_methods_do_not() -> None:
    http = re.compile(glob_regex("/admin/**", ignore_case=True))
    grpc = re.compile(glob_regex("/pkg.Orders/Get", ignore_case=False))
    mixed_rule = re.compile(glob_regex("/Orders/*", ignore_case=True))

    for path in ("/admin/x", "/ADMIN/x", "/Admin/x", "/aDmIn"):
        assert http.match(path), path
    assert not http.match("/administrator")
    assert mixed_rule.match("/orders/7") and mixed_rule.match("/ORDERS/7")
    assert grpc.match("/pkg.Orders/Get")
    assert not grpc.match("/pkg.orders/get")
