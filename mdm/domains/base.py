"""The types a domain is declared with: attributes, their normalisers, and the domain itself.

This module is pure Python (no Django import) so that a worker or a DuckDB process can
normalise records without loading the web application.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from mdm.domains.match_spec import MatchSpec

__all__ = [
    "Attribute",
    "AttributeType",
    "Domain",
    "FieldError",
    "NormalisationError",
    "Normaliser",
    "RecordContext",
    "RelationshipType",
    "UnknownDomainError",
]


class NormalisationError(ValueError):
    """A value cannot be normalised.

    ``message`` is a sentence for a person: what is wrong and what is expected, e.g.
    "'12-34' is not a valid phone number for AU; expected a number such as +61 2 1234 5678".
    """

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UnknownDomainError(LookupError):
    """No domain is registered under the requested code."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem found while normalising a record.

    ``field`` is the attribute name, or "" for a problem with the record as a whole.
    ``code`` is "invalid", "required" or "unknown_attribute".
    """

    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass(frozen=True, slots=True)
class RecordContext:
    """What a normaliser may know about the rest of the record.

    ``normalised`` holds the attributes already normalised; attributes are processed in the
    order they are declared, so a domain declares ``country`` before the phone numbers and
    identifiers that depend on it.
    """

    raw: Mapping[str, Any]
    normalised: dict[str, Any]


# Returns the normalised, JSON-serialisable value (str, int, float, bool or list), or None
# for "no value"; raises NormalisationError for a value that cannot be used.
Normaliser = Callable[[Any, RecordContext], Any]

AttributeType = Literal[
    "string",
    "name",
    "text",
    "date",
    "datetime",
    "email",
    "phone",
    "country",
    "currency",
    "identifier",
    "decimal",
    "integer",
    "boolean",
    "enum",
    "list",
]
_ATTRIBUTE_TYPES = frozenset(get_args(AttributeType))


@dataclass(frozen=True)
class Attribute:
    """One attribute of a domain, stored in the record's JSON under ``name``."""

    name: str
    type: AttributeType
    normalise: Normaliser
    label: str = ""
    pii: bool = False
    required: bool = False
    # Attributes that belong together (e.g. "address"): survivorship takes a group from one
    # record so that a golden address is never stitched from two different addresses.
    group: str | None = None
    choices: tuple[str, ...] = ()
    help_text: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"attribute name {self.name!r} must be a Python identifier")
        if self.type not in _ATTRIBUTE_TYPES:
            raise ValueError(
                f"attribute {self.name!r} has unknown type {self.type!r}; "
                f"expected one of: {', '.join(sorted(_ATTRIBUTE_TYPES))}"
            )
        if self.type == "enum" and not self.choices:
            raise ValueError(f"enum attribute {self.name!r} must declare its choices")
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " ").capitalize())


RELATIONSHIP_RULES = ("source_priority", "most_recent")


@dataclass(frozen=True)
class RelationshipType:
    """A kind of link from a record of one domain to a record of ``target`` (a domain code).

    Source records name their target by its key in the same source system (the mapping's
    ``[references]``); the hub resolves it to golden ids through the cross-reference.
    ``cardinality`` is how many targets one golden record may have: "one" (a parent, an
    employer) or "many".  With "one", when the members of a golden record disagree, ``rule``
    decides: "source_priority" (the most trusted source, then the newest) or "most_recent"
    (the newest record, then the most trusted).  ``hierarchy`` types refuse cycles; they need
    ``cardinality="one"`` and a target in the same domain.
    """

    code: str
    label: str
    target: str
    cardinality: Literal["one", "many"] = "one"
    hierarchy: bool = False
    rule: Literal["source_priority", "most_recent"] = "source_priority"
    inverse_label: str = ""

    def __post_init__(self) -> None:
        if not self.code.isidentifier():
            raise ValueError(f"relationship type {self.code!r} must be a Python identifier")
        if self.cardinality not in ("one", "many"):
            raise ValueError(f"relationship {self.code!r}: cardinality must be 'one' or 'many'")
        if self.rule not in RELATIONSHIP_RULES:
            raise ValueError(
                f"relationship {self.code!r}: rule must be one of {', '.join(RELATIONSHIP_RULES)}"
            )
        if self.hierarchy and self.cardinality != "one":
            raise ValueError(f"hierarchy {self.code!r} must have cardinality 'one' (one parent)")
        if not self.inverse_label:
            object.__setattr__(self, "inverse_label", f"{self.label} (inverse)")


_CONTAINERS = (list, tuple, set, frozenset, dict)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value or value.isspace()
    if isinstance(value, _CONTAINERS):
        return not value
    return False


@dataclass(frozen=True)
class Domain:
    """A kind of master data (customer, supplier, product) and its attributes.

    Attributes are normalised in the order they are declared. ``required_any`` lists groups
    of attributes of which at least one must have a value. ``display`` (optional) turns a
    record's attributes into a one-line name; without it the first present value of
    ``display_attributes`` is used.
    """

    code: str
    label: str
    attributes: tuple[Attribute, ...]
    required_any: tuple[tuple[str, ...], ...] = ()
    display_attributes: tuple[str, ...] = ()
    display: Callable[[Mapping[str, Any]], str] | None = field(default=None, compare=False)
    # The default match model (comparisons and blocking rules), engine-neutral.
    match: MatchSpec | None = field(default=None, compare=False)
    # The default survivorship rules, a spec as ``mdm.survivorship.rules_from_spec`` reads it
    # (``{"rules": {attribute or group: {"strategy": ...}}}``); unset units get the built-in
    # default (source priority, then most recent, most frequent, most complete).
    survivorship: Mapping[str, Any] | None = field(default=None, compare=False)
    # The links a record of this domain may have to other records (see RelationshipType).
    relationships: tuple[RelationshipType, ...] = field(default=(), compare=False)
    _by_name: dict[str, Attribute] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _steps: tuple[tuple[str, Normaliser], ...] = field(init=False, repr=False, compare=False)
    _required: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _required_any: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_name: dict[str, Attribute] = {}
        for attribute in self.attributes:
            if attribute.name in by_name:
                raise ValueError(f"domain {self.code} declares {attribute.name!r} twice")
            by_name[attribute.name] = attribute
        for name in (*(n for group in self.required_any for n in group), *self.display_attributes):
            if name not in by_name:
                raise ValueError(f"domain {self.code} refers to undeclared attribute {name!r}")
        codes = [r.code for r in self.relationships]
        if len(codes) != len(set(codes)):
            raise ValueError(f"domain {self.code} declares a relationship type twice")
        for rel in self.relationships:
            if rel.hierarchy and rel.target != self.code:
                raise ValueError(f"hierarchy {rel.code!r} must point to domain {self.code}")
            if rel.code in by_name:
                raise ValueError(f"relationship {rel.code!r} has an attribute's name")
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_names", tuple(by_name))
        object.__setattr__(self, "_steps", tuple((a.name, a.normalise) for a in self.attributes))
        # The completeness checks run for every record: walk only what can fail.
        object.__setattr__(self, "_required", tuple(a.name for a in self.attributes if a.required))
        object.__setattr__(
            self, "_required_any", tuple((group, frozenset(group)) for group in self.required_any)
        )

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self._names

    def relationship(self, code: str) -> RelationshipType:
        """The relationship type ``code``; KeyError naming the declared ones."""
        for rel in self.relationships:
            if rel.code == code:
                return rel
        known = ", ".join(r.code for r in self.relationships) or "none"
        raise KeyError(
            f"unknown relationship type {code!r} for domain {self.code}; expected one of: {known}"
        )

    def attribute(self, name: str) -> Attribute:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"unknown attribute {name!r} for domain {self.code}; "
                f"expected one of: {', '.join(self._by_name)}"
            ) from None

    def display_name(self, attributes: Mapping[str, Any]) -> str:
        """A one-line name for a record (normalised attributes); "" when it has none."""
        if self.display is not None:
            return self.display(attributes)
        for name in self.display_attributes:
            value = attributes.get(name)
            if not _is_empty(value):
                return str(value)
        return ""

    def normalise(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        """Normalise a record's raw values and check it is complete.

        Returns the normalised values (only non-empty ones, in declared order, all
        JSON-serialisable) and every problem found: unknown attribute names
        ("unknown_attribute"), values that cannot be normalised ("invalid" or the code the
        normaliser chose) and missing values ("required"). Pure and thread-safe.
        """
        errors: list[FieldError] = []
        by_name = self._by_name
        if not by_name.keys() >= values.keys():
            errors.extend(
                FieldError(
                    name,
                    f"unknown attribute {name!r} for domain {self.code}; "
                    f"expected one of: {', '.join(self._names)}",
                    "unknown_attribute",
                )
                for name in values
                if name not in by_name
            )
        normalised: dict[str, Any] = {}
        context = RecordContext(values, normalised)
        failed: set[str] = set()
        get = values.get
        # The hot loop of ingestion: empty values are skipped inline, without a call.
        for name, normalise in self._steps:
            value = get(name)
            if value is None:
                continue
            cls = value.__class__
            if cls is str:
                if not value or value.isspace():
                    continue
            elif _is_empty(value):
                continue
            try:
                result = normalise(value, context)
            except NormalisationError as exc:
                errors.append(FieldError(name, exc.message, exc.code))
                failed.add(name)
                continue
            if result is not None and result != "" and (result.__class__ is not list or result):
                normalised[name] = result
        for name in self._required:
            if name not in normalised and name not in failed:
                errors.append(FieldError(name, f"{name} is required", "required"))
        for group, names in self._required_any:
            if normalised.keys().isdisjoint(names) and failed.isdisjoint(names):
                errors.append(
                    FieldError(
                        "" if len(group) > 1 else group[0],
                        f"at least one of {', '.join(group)} is required",
                        "required",
                    )
                )
        return normalised, errors
