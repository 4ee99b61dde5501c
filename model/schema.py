"""Attribute schemas: which binary columns a model predicts, their text phrases and their groups.

Schemas are data (JSON files in ``model/schemas/``); a user can pass the path of their own file.
A group is either ``binary`` (one column, positive class = the phrase) or ``one_of`` (N one-hot columns,
exactly one true per tracklet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "schemas"
GROUP_KINDS = ("binary", "one_of")


class SchemaError(ValueError):
    """A schema file or name that cannot be used."""


@dataclass(frozen=True)
class Attribute:
    name: str
    phrase: str
    group: str


@dataclass(frozen=True)
class Group:
    name: str
    kind: str
    columns: tuple[int, ...]


@dataclass(frozen=True)
class AttributeSchema:
    name: str
    attributes: tuple[Attribute, ...]
    groups: tuple[Group, ...]
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def phrases(self) -> list[str]:
        return [a.phrase for a in self.attributes]

    def __len__(self) -> int:
        return len(self.attributes)

    def index(self, name: str) -> int:
        for i, attribute in enumerate(self.attributes):
            if attribute.name == name:
                return i
        raise KeyError(name)

    def group(self, name: str) -> Group:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The JSON form read by :func:`schema_from_dict` (and stored in checkpoints)."""
        return {
            "name": self.name,
            "description": self.description,
            "groups": [
                {
                    "name": g.name,
                    "kind": g.kind,
                    "attributes": [
                        {"name": self.attributes[i].name, "phrase": self.attributes[i].phrase} for i in g.columns
                    ],
                }
                for g in self.groups
            ],
        }


def schema_from_dict(data: dict, source: str = "<dict>") -> AttributeSchema:
    """Build and validate a schema; columns are numbered in file order, group by group."""
    try:
        name = str(data["name"])
        raw_groups = data["groups"]
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{source}: a schema needs 'name' and 'groups' ({exc!r} missing)") from None
    attributes: list[Attribute] = []
    groups: list[Group] = []
    seen: set[str] = set()
    for gi, raw in enumerate(raw_groups):
        try:
            group_name, kind, members = str(raw["name"]), str(raw["kind"]), raw["attributes"]
        except (KeyError, TypeError):
            raise SchemaError(f"{source}: group #{gi} needs 'name', 'kind' and 'attributes'") from None
        if kind not in GROUP_KINDS:
            raise SchemaError(f"{source}: group {group_name!r} has kind {kind!r}; expected one of {GROUP_KINDS}")
        if kind == "binary" and len(members) != 1:
            raise SchemaError(f"{source}: binary group {group_name!r} must have exactly one attribute")
        if kind == "one_of" and len(members) < 2:
            raise SchemaError(f"{source}: one_of group {group_name!r} needs at least two attributes")
        start = len(attributes)
        for member in members:
            try:
                attr = Attribute(name=str(member["name"]), phrase=str(member["phrase"]), group=group_name)
            except (KeyError, TypeError):
                raise SchemaError(
                    f"{source}: every attribute of group {group_name!r} needs 'name' and 'phrase'"
                ) from None
            if attr.name in seen:
                raise SchemaError(f"{source}: attribute name {attr.name!r} appears twice")
            if not attr.phrase.strip():
                raise SchemaError(f"{source}: attribute {attr.name!r} has an empty phrase")
            seen.add(attr.name)
            attributes.append(attr)
        groups.append(Group(name=group_name, kind=kind, columns=tuple(range(start, len(attributes)))))
    if not attributes:
        raise SchemaError(f"{source}: the schema has no attributes")
    return AttributeSchema(
        name=name, attributes=tuple(attributes), groups=tuple(groups), description=str(data.get("description", ""))
    )


def list_schemas() -> list[str]:
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))


def load_schema(name_or_path: str | Path) -> AttributeSchema:
    """A built-in schema by name (``mars``, ``mars-v1``, ``duke``) or a user JSON file by path."""
    path = SCHEMA_DIR / f"{name_or_path}.json"
    if not path.is_file():
        path = Path(name_or_path)
        if not path.is_file():
            raise SchemaError(
                f"unknown attribute schema {str(name_or_path)!r}: not one of {list_schemas()} and no such file"
            )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read schema JSON: {exc}") from None
    return schema_from_dict(data, source=str(path))
