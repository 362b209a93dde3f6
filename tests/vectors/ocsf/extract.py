"""Write ``ocsf-1.1.0.json`` beside this file: the OCSF 1.1.0 classes and objects we emit.

The source is the OCSF schema 1.1.0 as published by the OCSF project
(github.com/ocsf/ocsf-schema, tag v1.1.0, Apache-2.0), in the one-file form
that the PyPI package ``pydantic-ocsf`` 3.0.0 ships as
``ocsf/schemas/v1_1_0.json`` (every ``events/``, ``objects/`` and
``dictionary.json`` file of the tag, merged, not compiled). Two include
files that form lacks, ``includes/classification.json`` and
``includes/occurrence.json`` (the ``activity_id``, ``category_uid``,
``class_uid``, ``type_uid`` and ``time`` attributes of every class), are
copied below from the same repository.

What is kept, per class: its number (``category_uid * 1000 + uid``), its
activities (the class's own plus 0 Unknown and 99 Other), and every
attribute of the class, its category and ``base_event`` with its
requirement and type; per object: its attributes (``extends`` followed) and
``at_least_one`` constraints. Profile attributes are left out: we emit none.

Run from the repository root, with the wheel unpacked somewhere::

    pip download --no-deps pydantic-ocsf==3.0.0 && unzip pydantic_ocsf-3.0.0-py3-none-any.whl
    .venv/bin/python tests/vectors/ocsf/extract.py ocsf/schemas/v1_1_0.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "ocsf-1.1.0.json"
CLASSES = ("account_change", "authentication", "entity_management", "api_activity")
OBJECTS = (
    "metadata",
    "product",
    "actor",
    "user",
    "session",
    "network_endpoint",
    "location",
    "http_request",
    "api",
    "managed_entity",
    "resource_details",
    "service",
)
INCLUDES = {
    "includes/classification.json": {
        "activity_id": {"requirement": "required"},
        "activity_name": {"requirement": "optional"},
        "category_name": {"requirement": "optional"},
        "category_uid": {"requirement": "required"},
        "class_name": {"requirement": "optional"},
        "class_uid": {"requirement": "required"},
        "type_name": {"requirement": "optional"},
        "type_uid": {"requirement": "required"},
    },
    "includes/occurrence.json": {
        "count": {"requirement": "optional"},
        "duration": {"requirement": "optional"},
        "end_time": {"requirement": "optional"},
        "start_time": {"requirement": "optional"},
        "time": {"requirement": "required"},
        "timezone_offset": {"requirement": "recommended"},
    },
}


def _attributes(own: dict[str, Any], dictionary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, spec in own.items():
        if name == "$include":
            for include in spec:
                for inc_name, inc_spec in INCLUDES.get(include, {}).items():
                    out[inc_name] = _attribute(inc_name, inc_spec, dictionary)
            continue
        out[name] = _attribute(name, spec, dictionary)
    return out


def _attribute(name: str, spec: dict[str, Any], dictionary: dict[str, Any]) -> dict[str, Any]:
    known = dictionary[name]
    attr: dict[str, Any] = {"type": spec.get("type") or known["type"]}
    if spec.get("requirement"):
        attr["requirement"] = spec["requirement"]
    if known.get("is_array"):
        attr["is_array"] = True
    enum = spec.get("enum") or known.get("enum")
    if enum:
        attr["enum"] = {k: v["caption"] for k, v in sorted(enum.items(), key=_enum_order)}
    return attr


def _enum_order(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    return (int(key), "") if key.isdigit() else (1 << 30, key)


def _merged(table: dict[str, Any], name: str, dictionary: dict[str, Any]) -> dict[str, Any]:
    """Attributes along the ``extends`` chain, the nearest definition winning per key."""
    chain = []
    while name:
        chain.append(table[name])
        name = table[name].get("extends")
    attrs: dict[str, dict[str, Any]] = {}
    constraints: dict[str, Any] = {}
    for item in reversed(chain):
        for key, attr in _attributes(item.get("attributes", {}), dictionary).items():
            # an override without a requirement keeps the inherited one
            attrs[key] = {**attrs.get(key, {}), **attr}
        constraints.update(item.get("constraints", {}))
    for attr in attrs.values():
        attr.setdefault("requirement", "optional")
    return {"attributes": dict(sorted(attrs.items())), "constraints": constraints}


def main(source: Path) -> None:
    schema = json.loads(source.read_text())
    assert schema["version"] == "1.1.0", schema["version"]
    dictionary = schema["dictionary"]["attributes"]
    categories = schema["categories_meta"]["attributes"]
    events = schema["events"]
    classes = {}
    for name in CLASSES:
        event = events[name]
        category = events[event["extends"]]["category"]
        category_uid = categories[category]["uid"]
        merged = _merged(events, name, dictionary)
        activity = merged["attributes"]["activity_id"]
        activity["enum"] = dict(
            sorted(
                {"0": "Unknown", "99": "Other", **activity["enum"]}.items(),
                key=_enum_order,
            )
        )
        classes[str(category_uid * 1000 + event["uid"])] = {
            "name": name,
            "caption": event["caption"],
            "category_uid": category_uid,
            "category_name": categories[category]["caption"],
            **merged,
        }
    objects = {name: _merged(schema["objects"], name, dictionary) for name in OBJECTS}
    doc = {
        "source": (
            "OCSF schema 1.1.0 (github.com/ocsf/ocsf-schema tag v1.1.0, Apache-2.0), from the"
            " merged ocsf/schemas/v1_1_0.json of the PyPI package pydantic-ocsf 3.0.0; see"
            " tests/vectors/ocsf/extract.py"
        ),
        "version": schema["version"],
        "classes": classes,
        "objects": objects,
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
