import json

import pytest

from model import SchemaError, list_schemas, load_schema


def _boundaries(schema):
    return [g.columns[0] for g in schema.groups] + [len(schema)]


def test_builtin_schemas_match_the_method():
    assert {"mars", "mars-v1", "duke"} <= set(list_schemas())
    mars = load_schema("mars")
    assert len(mars) == 43 and len(mars.groups) == 14
    assert _boundaries(mars) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 20, 29, 39, 43]
    # Raw MARS column order: column 1 is bottom length, column 8 bottom type.
    assert mars.attributes[1].phrase == "bottom short" and mars.attributes[1].group == "bottom length"
    assert mars.attributes[8].phrase == "bottom skirt" and mars.attributes[8].group == "bottom type"
    assert mars.group("top color").kind == "one_of" and mars.group("hat").kind == "binary"
    duke = load_schema("duke")
    assert len(duke) == 36 and len(duke.groups) == 12
    assert _boundaries(duke) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 14, 19, 28, 36]
    assert duke.attributes[0].phrase == "carring backpack"
    v1 = load_schema("mars-v1")
    assert len(v1) == 32 and len(v1.groups) == 12
    assert {g.name for g in v1.groups} == {g.name for g in mars.groups} - {"pose", "motion"}


def test_user_schema_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "name": "mine",
                "groups": [
                    {"name": "umbrella", "kind": "binary", "attributes": [{"name": "umbrella", "phrase": "umbrella"}]},
                    {
                        "name": "shirt",
                        "kind": "one_of",
                        "attributes": [
                            {"name": "shirt_red", "phrase": "red shirt"},
                            {"name": "shirt_blue", "phrase": "blue shirt"},
                        ],
                    },
                ],
            }
        )
    )
    schema = load_schema(path)
    assert schema.names == ["umbrella", "shirt_red", "shirt_blue"]
    assert schema.group("shirt").columns == (1, 2)


@pytest.mark.parametrize(
    "groups, message",
    [
        ([{"name": "g", "kind": "many", "attributes": [{"name": "a", "phrase": "a"}]}], "kind"),
        ([{"name": "g", "kind": "binary", "attributes": []}], "exactly one"),
        ([{"name": "g", "kind": "one_of", "attributes": [{"name": "a", "phrase": "a"}]}], "at least two"),
        ([{"name": "g", "kind": "binary", "attributes": [{"name": "a"}]}], "phrase"),
    ],
)
def test_invalid_schema_files_are_refused(tmp_path, groups, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "groups": groups}))
    with pytest.raises(SchemaError, match=message):
        load_schema(path)


def test_unknown_schema_name():
    with pytest.raises(SchemaError, match="unknown attribute schema"):
        load_schema("market")
