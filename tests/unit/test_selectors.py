"""Label and field selectors: parsing, matching, rendering and upstream's
error wording."""

from __future__ import annotations

import pytest

from kubeling.api.selectors import (
    FieldSelector, SelectorError, exact_match, from_label_selector, parse_field_selector,
    parse_label_selector, selector_string,
)

NAME_PART = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
             "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
             "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")

WEB = {"app": "web", "tier": "frontend", "replicas": "3"}


@pytest.mark.parametrize("selector, matches", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app!=db", True),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db, cache)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("app", True),
    ("!app", False),
    ("!missing", True),
    ("replicas>2", True),
    ("replicas>3", False),
    ("replicas<4", True),
    ("app<4", False),  # a non-integer label never compares
    ("missing>1", False),
    ("app=web,tier=frontend", True),
    ("app=web,tier=backend", False),
    ("  app = web ,  tier in ( frontend )  ", True),
    ("app=", False),
    ("missing=", False),
    ("in=x", False),  # "in" is a plain key in key position
    ("app in (in,web)", True),  # ... and a plain value in a value list
])
def test_label_selector_matches(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(WEB) is matches


def test_empty_value_and_empty_set() -> None:
    assert parse_label_selector("app=").matches({"app": ""})
    assert parse_label_selector("app in ()").matches({"app": ""})
    assert parse_label_selector("app in (,x)").matches({"app": ""})
    assert parse_label_selector("x").matches(None) is False
    assert parse_label_selector("!x").matches(None) is True


@pytest.mark.parametrize("selector, rendered", [
    ("tier=frontend,app=web", "app=web,tier=frontend"),  # sorted by key
    ("app==web", "app==web"),
    ("app in (z,a,m)", "app in (a,m,z)"),
    ("app notin (x)", "app notin (x)"),
    ("!foo,bar", "bar,!foo"),
    ("n>1,m<2", "m<2,n>1"),
    ("app in (b,b,a)", "app in (a,b)"),
    ("", ""),
])
def test_label_selector_string(selector: str, rendered: str) -> None:
    sel = parse_label_selector(selector)
    assert selector_string(sel) == rendered == str(sel)
    assert selector_string(parse_label_selector(rendered)) == rendered


@pytest.mark.parametrize("selector, message", [
    ("app:web", f'unable to parse requirement: <nil>: Invalid value: "app:web": {NAME_PART}'),
    ("-a", f'unable to parse requirement: <nil>: Invalid value: "-a": {NAME_PART}'),
    ("a/b/c", 'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name must consist of '
              "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character "
              "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
              "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
              "(e.g. 'example.com/MyName')"),
    ("(", "found '(', expected: !, identifier, or 'end of string'"),
    ("app=web,", "found '', expected: identifier after ','"),
    ("app=web,,x", "found ',', expected: identifier after ','"),
    ("app=web x", "found 'x', expected: ',' or 'end of string'"),
    ("!app=web", "found '=', expected: ',' or 'end of string'"),
    ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"),
    ("app in web", "unable to parse requirement: found 'web' expected: '('"),
    ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    ("app in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("app in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("app=(", "unable to parse requirement: found '(', expected: identifier"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("a>x", 'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a=-b", 'unable to parse requirement: values[0][a]: Invalid value: "-b": a valid label must be an empty '
             "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation "
             "is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
])
def test_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse_label_selector(selector)
    assert str(e.value) == message


def test_from_label_selector() -> None:
    assert from_label_selector(None).matches(WEB) is False
    assert str(from_label_selector(None)) == ""
    assert from_label_selector({}).matches(WEB) is True
    assert from_label_selector({}).empty()
    sel = from_label_selector({
        "matchLabels": {"tier": "frontend", "app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod", "canary"]},
            {"key": "replicas", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    })
    assert sel.matches(WEB)
    assert not sel.matches({**WEB, "env": "prod"})
    assert not sel.matches({**WEB, "legacy": "1"})
    assert str(sel) == "app=web,env notin (canary,prod),!legacy,replicas,tier=frontend"
    assert from_label_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}).matches(
        {"a": "x"})


@pytest.mark.parametrize("obj, message", [
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
     '"Gt" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist'),
    ({"matchLabels": {"a b": "x"}}, f'key: Invalid value: "a b": {NAME_PART}'),
])
def test_from_label_selector_errors(obj: dict, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        from_label_selector(obj)
    assert str(e.value) == message


# ---------------------------------------------------------------- field selectors

POD = {"metadata.name": "web-1", "metadata.namespace": "default", "status.phase": "Running",
       "spec.nodeName": ""}


def get(field: str) -> str | None:
    return POD.get(field)


@pytest.mark.parametrize("selector, matches", [
    ("", True),
    ("metadata.name=web-1", True),
    ("metadata.name==web-1", True),
    ("metadata.name!=web-1", False),
    ("metadata.name=web-2", False),
    ("status.phase!=Succeeded,status.phase!=Failed", True),
    ("metadata.name=web-1,metadata.namespace=default", True),
    ("metadata.name=web-1,metadata.namespace=kube-system", False),
    ("spec.nodeName=", True),
    ("spec.schedulerName=", True),  # absent compares as ""
    ("spec.nodeName!=", False),
])
def test_field_selector_matches(selector: str, matches: bool) -> None:
    assert parse_field_selector(selector).matches(get) is matches


def test_field_selector_requirements_and_string() -> None:
    # kubectl sends terms in random order; upstream sorts them by text
    sel = parse_field_selector("involvedObject.uid=abc,involvedObject.name=web,involvedObject.namespace==default")
    assert sel.requirements == (
        ("involvedObject.name", "=", "web"),
        ("involvedObject.namespace", "=", "default"),
        ("involvedObject.uid", "=", "abc"),
    )
    assert str(sel) == "involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=abc"
    assert parse_field_selector("=").empty()  # a bare "=" selects everything
    assert parse_field_selector(",,").empty()


def test_field_selector_escapes() -> None:
    sel = parse_field_selector(r"metadata.annotations.x=a\,b\=c\\d,metadata.name=n")
    assert sel.requirements == (("metadata.annotations.x", "=", "a,b=c\\d"), ("metadata.name", "=", "n"))
    assert str(sel) == r"metadata.annotations.x=a\,b\=c\\d,metadata.name=n"
    assert parse_field_selector("a!=b=c".replace("b=c", r"b\=c")).requirements == (("a", "!=", "b=c"),)


@pytest.mark.parametrize("selector, message", [
    ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
    ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse_field_selector(selector)
    assert str(e.value) == message


def test_unsupported_fields() -> None:
    sel = parse_field_selector("spec.foo=1,metadata.name=x,bar=2")
    assert sel.unsupported({"metadata.name", "metadata.namespace"}) == ["bar", "spec.foo"]
    assert FieldSelector().unsupported(set()) == []


def test_exact_match() -> None:
    sel = parse_field_selector("metadata.namespace!=kube-system,metadata.name==web")
    assert exact_match(sel, "metadata.name") == "web"
    assert exact_match(sel, "metadata.namespace") is None
    assert exact_match(parse_field_selector(""), "metadata.name") is None
    assert exact_match(parse_field_selector("metadata.name="), "metadata.name") == ""
