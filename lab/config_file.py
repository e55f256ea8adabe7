"""A YAML file checked against a JSON Schema (lab.yml, kind.yml), every problem one
ConfigError naming the file, the line and the key, with the closest valid key or value."""

from __future__ import annotations

import difflib
from pathlib import Path

import jsonschema
import yaml

from lab.errors import ConfigError


def read(path: Path, schema: dict, empty: str) -> tuple[object, yaml.Node]:
    """(data, its YAML node tree) of the file at ``path``; ``empty`` says what was expected."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse(text, path, schema, empty)


def parse(text: str, path: Path, schema: dict, empty: str) -> tuple[object, yaml.Node]:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {getattr(error, 'problem', None) or error}") from None
    if root is None:
        raise ConfigError(f"{path}:1: the file is empty; {empty}")
    _reject_duplicate_keys(root, path)
    data = yaml.safe_load(text)
    _validate(data, root, path, schema)
    return data, root


def _reject_duplicate_keys(node: yaml.Node, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if key.value in seen:
                raise ConfigError(f"{path}:{key.start_mark.line + 1}: duplicate key {key.value!r}")
            seen.add(key.value)
            _reject_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, path)


def _node_at(root: yaml.Node, keys) -> tuple[yaml.Node, yaml.Node | None]:
    """The value node at ``keys`` (as deep as it exists) and the key node naming it."""
    node, key_node = root, None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            key_node, node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            key_node, node = None, node.value[key]  # an item's own line
        else:
            break
    return node, key_node


def located(path: Path, root: yaml.Node, keys, message: str, line_keys=None) -> ConfigError:
    """An error at ``keys``, on the line of ``line_keys`` (default: the same keys)."""
    node, key_node = _node_at(root, keys if line_keys is None else line_keys)
    line = (key_node or node).start_mark.line + 1
    dotted = ".".join(str(k) for k in keys)
    return ConfigError(f"{path}:{line}: {dotted + ': ' if dotted else ''}{message}")


def where(path: Path, root: yaml.Node, keys) -> str:
    """``FILE:LINE: a.b``: the place of ``keys``, for an error found later (after the file was read)."""
    return str(located(path, root, keys, "")).rstrip(": ")


def _validate(data, root: yaml.Node, path: Path, schema: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    error = errors[0]
    while error.validator in ("oneOf", "anyOf") and error.context:
        # One of several forms (a name, or a mapping): say what is wrong with the form meant.
        wrong_type = {e.relative_schema_path[0] for e in error.context if e.validator == "type" and not e.relative_path}
        meant = [e for e in error.context if e.relative_schema_path[0] not in wrong_type]
        error = jsonschema.exceptions.best_match(meant or error.context)
    keys = list(error.absolute_path)
    line_keys = keys
    if error.validator == "additionalProperties":  # point at the unknown key itself
        line_keys = keys + sorted(set(error.instance) - set(error.schema.get("properties", {})))[:1]
    raise located(path, root, keys, _describe(error), line_keys)


def _describe(error: jsonschema.ValidationError) -> str:
    """A short sentence saying what was expected, with a suggestion for typos."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hint = difflib.get_close_matches(unknown[0], allowed, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; expected one of: {', '.join(allowed)}"
        return f"unknown key {unknown[0]!r}{suggestion}"
    if error.validator == "enum":
        options = [str(o) for o in error.validator_value]
        hint = difflib.get_close_matches(str(error.instance), options, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        return f"{error.instance!r} is not one of: {', '.join(options)}{suggestion}"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {_a(expected)}, got {_type_name(error.instance)}"
    if error.validator == "required":
        return error.message.replace("property", "key")
    if error.validator == "pattern":
        description = error.schema.get("description")
        return f"{error.instance!r} is not valid" + (f": {description}" if description else "")
    if error.validator == "propertyNames":
        return f"invalid name {error.instance!r}" if not isinstance(error.instance, dict) else error.message
    if error.validator == "minProperties":
        return "must not be empty"
    return error.message


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _type_name(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
