"""Typed reading of every JSON document kerasrecon reads: one place, one rule.

``read_json(path)`` decodes a file (UTF-8, JSON) and ``from_dict(cls, value, where)`` builds a dataclass
from it, checking the *structure* before any value is used: the document must be an object, every key
a field, every required field present, and every value of its annotated type (``int`` is not ``bool``,
``float`` is finite, ``list[X]``/``dict[str, X]``/nested dataclasses/``X | None`` are checked element
by element). A violation is one ``DataError`` line naming the file and the JSON path
(``config.json: model.blocks must be an integer. Received: 1.5``), never a ``TypeError`` traceback
from deep inside a reader.

The documents: a run's ``config.json`` (:class:`kerasrecon.config.TrainConfig`), a dataset's
``manifest.json`` (:class:`kerasrecon.data.volume.Manifest`), a checkpoint's ``state.json``
(:class:`kerasrecon.training.checkpoint.CheckpointState`) and an export's metadata
(:class:`kerasrecon.export.ExportMetadata`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path

from kerasrecon.errors import DataError

_NAMES = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}


def read_json(path, what: str = "JSON document"):
    """The parsed JSON of file ``path``; ``DataError`` naming the file when it cannot be read, is not
    UTF-8 or is not JSON (``what`` says what was expected, e.g. ``a kerasrecon dataset manifest``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    return parse_json(raw, str(path), what)


def parse_json(raw, where: str, what: str = "JSON document"):
    """Parse ``raw`` (bytes or str) as JSON; ``DataError`` naming ``where`` on bad UTF-8 or bad JSON."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start}); expected {what}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = (
            f"line {exc.lineno} column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else "nested too deeply"
        )
        raise DataError(f"{where}: not valid JSON ({detail}); expected {what}") from None


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _NAMES:
        return _NAMES[tp]
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + (" or null" if len(inner) < len(args) else "")
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "an object"
    if dataclasses.is_dataclass(tp):
        return "an object"
    if tp is typing.Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


def _received(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(value, tp, where: str, path: str = "", extra: str = "forbid"):
    """Check ``value`` against annotation ``tp`` (see the module docstring); returns the value converted
    where the annotation asks them (nested dataclasses built, ``int`` accepted for ``float``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return check_value(value, option, where, path, extra)
            except DataError:
                continue
        raise _bad(where, path, tp, value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, path, extra)
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise _bad(where, path, tp, value)
        return [check_value(v, args[0], where, f"{path}[{i}]", extra) for i, v in enumerate(value)] if args else value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _bad(where, path, tp, value)
        return {k: check_value(v, args[1], where, f"{path}.{k}", extra) for k, v in value.items()} if args else value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"schema: unsupported annotation {tp!r} at {where}")
    if not ok:
        raise _bad(where, path, tp, value)
    return float(value) if tp is float else value


def _bad(where, path, tp, value) -> DataError:
    return DataError(f"{where}: {path or 'the document'} must be {_describe(tp)}. Received: {_received(value)}")


def from_dict(cls, value, where: str, path: str = "", extra: str = "forbid"):
    """Build dataclass ``cls`` from a parsed JSON object, checking structure and types.

    Args:
        cls: a dataclass; its annotations are the schema.
        value: the parsed JSON value (anything: the check says what was expected).
        where: how messages name the document (``RUN/config.json``).
        path: the JSON path of ``value`` inside it (``""`` for the whole document).
        extra: ``forbid`` (unknown keys are an error) or ``ignore`` (documents that carry more, such as
            a manifest's per-volume attributes, keep only the declared fields).

    Raises:
        DataError: one line naming ``where`` and the offending key.
    """
    if not isinstance(value, dict):
        raise DataError(
            f"{where}: {path or 'the document'} must be a JSON object with keys "
            f"{', '.join(f.name for f in dataclasses.fields(cls))}. Received: {_received(value)}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown and extra == "forbid":
        raise DataError(
            f"{where}: unknown key {(path + '.' if path else '') + unknown[0]!r}; expected keys "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(
                    f"{where}: missing key {(path + '.' if path else '') + name!r} ({_describe(hints[name])})"
                )
            continue
        kwargs[name] = check_value(value[name], hints[name], where, f"{path}.{name}" if path else name, extra)
    try:
        return cls(**kwargs)
    except DataError:
        raise
    except (ValueError, TypeError) as exc:  # the dataclass's own range checks
        raise DataError(f"{where}: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}") from None
