"""Source mappings: compile a mapping spec (docs/mapping-format.md) into a fast row mapper.

A compiled mapping is pure Python (no Django), so it can run in any process.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from mdm.domains import get_domain
from mdm.domains.base import Domain, FieldError

SPEC_KEYS = {
    "source",
    "source_name",
    "domain",
    "name",
    "default",
    "format",
    "delimiter",
    "encoding",
    "key",
    "updated_at",
    "deleted",
    "attributes",
    "references",
    "description",
}
ATTRIBUTE_KEYS = {"field", "template", "const", "format", "map", "strict", "default", "split"}
FILE_FORMATS = ("csv", "json", "jsonl", "parquet")
IDENTITY_META = ("source_key", "source_updated_at", "deleted", "references")
REFERENCE_KEYS = {"field", "template", "split"}
_WS = re.compile(r"\s+")
_MISSING = object()


class MappingError(ValueError):
    """The mapping spec itself is wrong; the message says where and what to fix."""


class RowMappingError(ValueError):
    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message


@dataclass(frozen=True, slots=True)
class RowMeta:
    """What is known about a row before its attributes are mapped: cheap to compute."""

    source_key: str | None
    source_updated_at: datetime | None
    deleted: bool
    errors: tuple[FieldError, ...] = ()
    # (relationship type, source key of the target in the same source system), sorted.
    references: tuple[tuple[str, str], ...] = ()


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict):
        return len(value) == 0
    return False


def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    if "." not in path:

        def get_flat(row: Mapping[str, Any]) -> Any:
            if path in row:
                return row[path]
            return None

        return get_flat
    parts = path.split(".")

    def get_nested(row: Mapping[str, Any]) -> Any:
        if path in row:  # a flat column that happens to contain dots
            return row[path]
        value: Any = row
        for part in parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
            if value is None:
                return None
        return value

    return get_nested


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def _template(template: str, where: str) -> Callable[[Mapping[str, Any]], Any]:
    try:
        names = [fname for _, fname, _, _ in string.Formatter().parse(template) if fname]
    except ValueError as exc:
        raise MappingError(f"{where}: bad template {template!r}: {exc}") from exc
    getters = {name: _getter(name) for name in names}

    def render(row: Mapping[str, Any]) -> Any:
        values = _Blank()
        for name, get in getters.items():
            value = get(row)
            values[name] = "" if _empty(value) else value
        # Positional-free templates only: names are looked up by key.
        text = template.format_map(values)
        text = _WS.sub(" ", text).strip()
        return text or None

    # str.format_map cannot take dotted names as keys; rewrite them to safe placeholders.
    if any("." in n or "[" in n for n in names):
        safe = {n: f"f{i}" for i, n in enumerate(names)}
        rewritten = template
        for original, alias in safe.items():
            rewritten = rewritten.replace("{" + original, "{" + alias)
        alias_getters = {safe[n]: getters[n] for n in names}

        def render_aliased(row: Mapping[str, Any]) -> Any:
            values = _Blank()
            for alias, get in alias_getters.items():
                value = get(row)
                values[alias] = "" if _empty(value) else value
            text = _WS.sub(" ", rewritten.format_map(values)).strip()
            return text or None

        return render_aliased
    return render


@lru_cache(maxsize=65536)
def _parse_text_date(text: str, formats: tuple[str, ...], as_date: bool) -> str:
    for fmt in formats:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.date().isoformat() if as_date else parsed.isoformat()
    shown = " or ".join(repr(f) for f in formats)
    raise ValueError(f"{text!r} does not match the date format {shown}")


def _parse_datetime(value: Any, formats: tuple[str, ...], *, as_date: bool) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat() if as_date else value
    if isinstance(value, date):
        return value.isoformat() if as_date else datetime(value.year, value.month, value.day)
    text = str(value).strip()
    if not formats:
        return text  # the domain's normaliser reads ISO 8601 itself
    return _parse_text_date(text, formats, as_date)


def _formats(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MappingError(f"{where}: 'format' must be a string or a list of strings")


@dataclass(frozen=True)
class _AttributeRule:
    name: str
    read: Callable[[Mapping[str, Any]], Any]
    convert: Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _ReferenceRule:
    code: str
    read: Callable[[Mapping[str, Any]], Any]
    split: str | None


def _compile_reference(domain: Domain, code: str, raw_spec: Any) -> _ReferenceRule:
    where = f"references.{code}"
    try:
        rel = domain.relationship(code)
    except KeyError as exc:
        raise MappingError(f"{where}: {exc.args[0]}") from None
    spec: dict[str, Any] = {"field": raw_spec} if isinstance(raw_spec, str) else raw_spec
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: expected a field name or a table")
    unknown = set(spec) - REFERENCE_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(REFERENCE_KEYS)}"
        )
    if len([k for k in ("field", "template") if k in spec]) != 1:
        raise MappingError(f"{where}: give exactly one of 'field' or 'template'")
    split = spec.get("split")
    if split is not None:
        if not isinstance(split, str) or not split:
            raise MappingError(f"{where}: 'split' must be a non-empty string")
        if rel.cardinality == "one":
            raise MappingError(f"{where}: 'split' needs a relationship of cardinality 'many'")
    read = _getter(spec["field"]) if "field" in spec else _template(str(spec["template"]), where)
    return _ReferenceRule(rel.code, read, split)


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping ready to apply to rows."""

    domain: Domain
    spec: dict[str, Any]
    fingerprint: str
    name: str
    source: str | None
    file_format: str | None
    delimiter: str
    encoding: str
    identity: bool
    _key: Callable[[Mapping[str, Any]], Any] = field(repr=False)
    _updated: Callable[[Mapping[str, Any]], Any] | None = field(repr=False)
    _updated_formats: tuple[str, ...] = field(repr=False)
    _deleted: Callable[[Mapping[str, Any]], bool] | None = field(repr=False)
    _rules: tuple[_AttributeRule, ...] = field(repr=False)
    _references: tuple[_ReferenceRule, ...] = field(default=(), repr=False)

    @property
    def has_references(self) -> bool:
        """Whether rows of this mapping can carry references (the identity mapping can)."""
        return self.identity or bool(self._references)

    def meta(self, row: Mapping[str, Any]) -> RowMeta:
        """Source key, source-updated time and tombstone flag of a row."""
        errors: list[FieldError] = []
        key_value = self._key(row)
        key: str | None
        if _empty(key_value):
            key = None
            errors.append(FieldError("source_key", self._key_missing_message(), "required"))
        else:
            key = str(key_value).strip()
            if len(key) > 255:
                errors.append(FieldError("source_key", "source key is longer than 255 characters"))
        updated: datetime | None = None
        if self._updated is not None:
            raw_updated = self._updated(row)
            if not _empty(raw_updated):
                try:
                    updated = _to_aware(raw_updated, self._updated_formats)
                except ValueError as exc:
                    errors.append(FieldError("source_updated_at", str(exc)))
        deleted = bool(self._deleted(row)) if self._deleted is not None else False
        references: tuple[tuple[str, str], ...] = ()
        if self.has_references:
            references = self._read_references(row, key, errors)
        return RowMeta(key, updated, deleted, tuple(errors), references)

    def _read_references(
        self, row: Mapping[str, Any], key: str | None, errors: list[FieldError]
    ) -> tuple[tuple[str, str], ...]:
        found: set[tuple[str, str]] = set()
        if self.identity:
            given = row.get("references")
            if _empty(given):
                return ()
            if not isinstance(given, Mapping):
                errors.append(
                    FieldError(
                        "references",
                        "references must be an object of relationship type -> source key "
                        '(or a list of keys), e.g. {"child_of": "ACME-1"}',
                    )
                )
                return ()
            items: list[tuple[str, Any]] = []
            for code, value in given.items():
                try:
                    rel = self.domain.relationship(str(code))
                except KeyError as exc:
                    errors.append(FieldError(f"references.{code}", str(exc.args[0])))
                    continue
                values = value if isinstance(value, list) else [value]
                if rel.cardinality == "one" and len([v for v in values if not _empty(v)]) > 1:
                    errors.append(
                        FieldError(
                            f"references.{code}",
                            f"{code} takes one target (cardinality one), not {len(values)}",
                        )
                    )
                    continue
                items.extend((rel.code, v) for v in values)
        else:
            items = []
            for rule in self._references:
                value = rule.read(row)
                if rule.split and isinstance(value, str):
                    items.extend((rule.code, part) for part in value.split(rule.split))
                else:
                    items.append((rule.code, value))
        for code, value in items:
            if _empty(value) or isinstance(value, (dict, list)):
                if isinstance(value, (dict, list)) and value:
                    errors.append(
                        FieldError(f"references.{code}", f"{value!r} is not a source key")
                    )
                continue
            target = str(value).strip()
            if not target:
                continue
            if len(target) > 255:
                errors.append(
                    FieldError(f"references.{code}", "referenced key is longer than 255 characters")
                )
            elif target == key:
                errors.append(
                    FieldError(
                        f"references.{code}",
                        f"the record references itself ({code} {target!r}); "
                        "a record cannot be its own target",
                    )
                )
            else:
                found.add((code, target))
        return tuple(sorted(found))

    def map_attributes(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        """The row's values under the domain's attribute names (not yet normalised)."""
        values: dict[str, Any] = {}
        errors: list[FieldError] = []
        if self.identity:
            allowed = self.domain.attribute_names
            for name, value in row.items():
                if name in IDENTITY_META:
                    continue
                if name not in allowed:
                    errors.append(
                        FieldError(
                            name,
                            f"unknown attribute '{name}' for domain {self.domain.code}; "
                            f"expected one of: {', '.join(allowed)}",
                            "unknown_attribute",
                        )
                    )
                    continue
                values[name] = value
            return values, errors
        for rule in self._rules:
            value = rule.read(row)
            if rule.convert is not None:
                try:
                    value = rule.convert(value)
                except ValueError as exc:
                    errors.append(FieldError(rule.name, str(exc)))
                    continue
            values[rule.name] = value
        return values, errors

    def _key_missing_message(self) -> str:
        if self.identity:
            return "source_key is missing; every record needs the key it has in its source system"
        key_spec = self.spec.get("key", {})
        what = key_spec.get("field") or key_spec.get("template")
        return f"source key is empty (mapping builds it from {what!r})"


def _to_aware(value: Any, formats: tuple[str, ...]) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        parsed_value: datetime | None = None
        for fmt in formats:
            try:
                parsed_value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if parsed_value is None:
            if formats:
                shown = " or ".join(repr(f) for f in formats)
                raise ValueError(f"{text!r} does not match the date format {shown}")
            try:
                parsed_value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
        parsed = parsed_value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _compile_value_map(spec: dict[str, Any], where: str) -> Callable[[Any], Any]:
    table = spec["map"]
    if not isinstance(table, dict):
        raise MappingError(f"{where}: 'map' must be a table of source value = attribute value")
    lookup = {str(k).strip().lower(): v for k, v in table.items()}
    strict = bool(spec.get("strict", False))
    expected = ", ".join(repr(k) for k in table)

    def apply_map(value: Any) -> Any:
        if _empty(value):
            return value
        text = str(value).strip().lower()
        if isinstance(value, bool):
            text = "true" if value else "false"
        if text in lookup:
            return lookup[text]
        if strict:
            raise ValueError(f"{value!r} is not one of the mapped values ({expected})")
        return value

    return apply_map


def _compile_rule(domain: Domain, name: str, raw_spec: Any) -> _AttributeRule:
    where = f"attributes.{name}"
    if name not in domain.attribute_names:
        raise MappingError(
            f"{where}: '{name}' is not an attribute of domain {domain.code}; "
            f"expected one of: {', '.join(domain.attribute_names)}"
        )
    spec: dict[str, Any] = {"field": raw_spec} if isinstance(raw_spec, str) else raw_spec
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: expected a field name or a table")
    unknown = set(spec) - ATTRIBUTE_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(ATTRIBUTE_KEYS)}"
        )
    sources = [k for k in ("field", "template", "const") if k in spec]
    if len(sources) != 1:
        raise MappingError(f"{where}: give exactly one of 'field', 'template' or 'const'")
    read: Callable[[Mapping[str, Any]], Any]
    if "field" in spec:
        if not isinstance(spec["field"], str) or not spec["field"]:
            raise MappingError(f"{where}: 'field' must be a non-empty string")
        read = _getter(spec["field"])
    elif "template" in spec:
        read = _template(str(spec["template"]), where)
    else:
        constant = spec["const"]

        def read_const(row: Mapping[str, Any]) -> Any:
            return constant

        read = read_const

    steps: list[Callable[[Any], Any]] = []
    if "map" in spec:
        steps.append(_compile_value_map(spec, where))
    if "split" in spec:
        sep = spec["split"]
        if not isinstance(sep, str) or not sep:
            raise MappingError(f"{where}: 'split' must be a non-empty string")

        def split(value: Any) -> Any:
            if isinstance(value, str):
                return [part.strip() for part in value.split(sep) if part.strip()]
            return value

        steps.append(split)
    if "format" in spec:
        attr_type = domain.attribute(name).type
        if attr_type not in ("date", "datetime"):
            raise MappingError(f"{where}: 'format' applies to date attributes only")
        formats = _formats(spec["format"], where)
        as_date = attr_type == "date"

        def parse(value: Any) -> Any:
            if _empty(value):
                return value
            return _parse_datetime(value, formats, as_date=as_date)

        steps.append(parse)
    if "default" in spec:
        default = spec["default"]

        def fill(value: Any) -> Any:
            return default if _empty(value) else value

        steps.insert(0, fill)

    convert: Callable[[Any], Any] | None = None
    if len(steps) == 1:
        convert = steps[0]
    elif steps:
        chain = tuple(steps)

        def run_chain(value: Any) -> Any:
            for step in chain:
                value = step(value)
            return value

        convert = run_chain
    return _AttributeRule(name, read, convert)


def fingerprint_of(spec: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def compile_mapping(spec: Mapping[str, Any], *, domain: str | None = None) -> CompiledMapping:
    """Check a mapping spec and compile it.  Raises MappingError saying what to fix."""
    if not isinstance(spec, Mapping):
        raise MappingError("a mapping must be a table/object")
    spec = dict(spec)
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise MappingError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}")
    domain_code = spec.get("domain") or domain
    if not domain_code:
        raise MappingError("'domain' is required")
    if domain and spec.get("domain") and spec["domain"] != domain:
        raise MappingError(f"mapping is for domain {spec['domain']!r}, not {domain!r}")
    try:
        dom = get_domain(domain_code)
    except LookupError as exc:
        raise MappingError(str(exc)) from exc
    spec["domain"] = dom.code
    file_format = spec.get("format")
    if file_format is not None and file_format not in FILE_FORMATS:
        raise MappingError(f"'format' must be one of {', '.join(FILE_FORMATS)}")

    key_spec = spec.get("key")
    if (
        not isinstance(key_spec, dict)
        or len([k for k in ("field", "template") if k in key_spec]) != 1
    ):
        raise MappingError("[key] needs exactly one of 'field' or 'template'")
    key = (
        _getter(key_spec["field"])
        if "field" in key_spec
        else _template(str(key_spec["template"]), "key")
    )

    updated = None
    updated_formats: tuple[str, ...] = ()
    if "updated_at" in spec:
        u = spec["updated_at"]
        if isinstance(u, str):
            u = {"field": u}
        if not isinstance(u, dict) or "field" not in u:
            raise MappingError("[updated_at] needs a 'field'")
        updated = _getter(u["field"])
        updated_formats = _formats(u.get("format"), "updated_at")

    deleted = None
    if "deleted" in spec:
        d = spec["deleted"]
        if not isinstance(d, dict) or "field" not in d:
            raise MappingError("[deleted] needs a 'field' and optionally 'values'")
        get_deleted = _getter(d["field"])
        values = {str(v).strip().lower() for v in d.get("values", ["true", "1", "yes", "y"])}

        def is_deleted(row: Mapping[str, Any]) -> bool:
            value = get_deleted(row)
            if value is None:
                return False
            if isinstance(value, bool):
                return value and "true" in values
            return str(value).strip().lower() in values

        deleted = is_deleted

    attrs = spec.get("attributes")
    if not isinstance(attrs, dict) or not attrs:
        raise MappingError("[attributes] must map at least one attribute")
    rules = tuple(_compile_rule(dom, name, rule) for name, rule in attrs.items())
    refs = spec.get("references", {})
    if not isinstance(refs, dict):
        raise MappingError("[references] must map relationship types to source fields")
    references = tuple(_compile_reference(dom, code, rule) for code, rule in refs.items())
    return CompiledMapping(
        domain=dom,
        spec=spec,
        fingerprint=fingerprint_of(spec),
        name=str(spec.get("name") or "default"),
        source=spec.get("source"),
        file_format=file_format,
        delimiter=str(spec.get("delimiter", ",")),
        encoding=str(spec.get("encoding", "utf-8")),
        identity=False,
        _key=key,
        _updated=updated,
        _updated_formats=updated_formats,
        _deleted=deleted,
        _rules=rules,
        _references=references,
    )


def identity_mapping(domain: str) -> CompiledMapping:
    """The mapping used when none is given: fields are the domain's attribute names."""
    dom = get_domain(domain)

    def is_deleted(row: Mapping[str, Any]) -> bool:
        value = row.get("deleted")
        if isinstance(value, str):
            return value.strip().lower() in {"true", "1", "yes", "y"}
        return bool(value)

    spec = {"domain": dom.code, "name": "identity"}
    return CompiledMapping(
        domain=dom,
        spec=spec,
        fingerprint=fingerprint_of(spec),
        name="identity",
        source=None,
        file_format=None,
        delimiter=",",
        encoding="utf-8",
        identity=True,
        _key=_getter("source_key"),
        _updated=_getter("source_updated_at"),
        _updated_formats=(),
        _deleted=is_deleted,
        _rules=(),
    )


def load_mapping_file(path: str | Path) -> dict[str, Any]:
    """Read a mapping file (.toml or .json).  Raises MappingError naming the file."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {p}: {exc.strerror}") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text.decode("utf-8"))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(
            f"{p}: not valid {p.suffix.lstrip('.').upper() or 'TOML'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise MappingError(f"{p}: a mapping file holds one table/object")
    return data
