"""The JSON schema of ``report.json`` (JSON Schema draft-07) and its validation.

The schema is versioned with :data:`SCHEMA_VERSION` (semantic versioning: a new optional field
bumps the minor version, a removed or retyped field the major one); every report names the
version it follows in ``schema_version``. :func:`validate` uses ``jsonschema`` when it is
installed and otherwise a small built-in checker of the keywords used here (``type``,
``required``, ``properties``, ``items``, ``enum``, ``minimum``, ``maximum``, ``const``,
``minItems``, ``maxItems``).
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..quantification import TRANSMURALITY_BINS

__all__ = ["SCHEMA_ID", "SCHEMA_VERSION", "SCHEMA", "validate", "schema_errors"]

SCHEMA_VERSION = "1.0.0"
SCHEMA_ID = f"urn:cardiac-mi:schema:lge-infarct-report:{SCHEMA_VERSION}"

_NUM = {"type": "number"}
_PCT = {"type": "number", "minimum": 0, "maximum": 100}
_VOL = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}


def _nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "required": list(properties) if required is None else required, "properties": properties}


_AMOUNT = {"present": {"type": "boolean"}, "voxels": _COUNT, "volume_ml": _VOL, "mass_g": _VOL, "percent_lv": _PCT}

_SEGMENT = _object(
    {
        "segment": {"type": "integer", "minimum": 1, "maximum": 17},
        "name": _STR,
        "level": {"type": "string", "enum": ["basal", "mid", "apical", "apex"]},
        "territory": {"type": "string", "enum": ["LAD", "RCA", "LCX"]},
        "present": {"type": "boolean"},
        "myocardium_volume_ml": _VOL,
        "myocardium_mass_g": _VOL,
        "infarct_percent": _nullable(_PCT),
        "no_reflow_percent": _nullable(_PCT),
        "transmurality_mean_percent": _nullable(_PCT),
        "transmurality_max_percent": _nullable(_PCT),
        "transmurality_bin": {"type": ["string", "null"], "enum": [*TRANSMURALITY_BINS, None]},
        "wall_thickness_mm": _nullable(_VOL),
        "rays": _COUNT,
        "infarcted": {"type": "boolean"},
        "viable": {"type": ["boolean", "null"]},
    }
)

_SLICE = _object(
    {
        "k": _COUNT,
        "level": {"type": "string", "enum": ["basal", "mid", "apical", "apex"]},
        "myocardium_volume_ml": _VOL,
        "infarct_percent": _PCT,
        "no_reflow_percent": _PCT,
        "transmurality_mean_percent": _nullable(_PCT),
        "transmurality_max_percent": _nullable(_PCT),
        "rays": _COUNT,
    }
)

_METHOD = _object(
    {
        "name": _STR,
        "rule": _STR,
        "threshold": _nullable(_NUM),
        "voxels": _COUNT,
        "volume_ml": _VOL,
        "percent_lv": _PCT,
    }
)

_CLASSICAL = {
    "type": ["object", "null"],
    "required": ["remote", "methods"],
    "properties": {
        "remote": _object(
            {
                "method": _STR,
                "voxels": _COUNT,
                "slices": {
                    "type": "array",
                    "items": _object({"k": _COUNT, "mean": _nullable(_NUM), "sd": _nullable(_NUM)}),
                },
            }
        ),
        "methods": {"type": "array", "items": _METHOD},
    },
}

_QUANTIFICATION = _object(
    {
        "version": _STR,
        "software": _object({"name": _STR, "version": _STR}),
        "parameters": _object(
            {
                "myocardium_density_g_per_ml": _VOL,
                "infarct_labels": {"type": "array", "items": {"type": "integer"}},
                "viability_threshold_percent": _PCT,
                "infarcted_segment_min_percent": _PCT,
                "pathological_min_percent": _PCT,
                "rv_insertion_deg": _NUM,
                "rv_insertion_source": {"type": "string", "enum": ["given", "default"]},
                "base_first": {"type": "boolean"},
                "slice_order_source": {"type": "string", "enum": ["given", "anatomy", "default"]},
                "ray_step_deg": _VOL,
                "transmurality_method": _STR,
            }
        ),
        "geometry": _object(
            {
                "shape": {"type": "array", "items": _COUNT, "minItems": 3, "maxItems": 3},
                "spacing_mm": {"type": "array", "items": _VOL, "minItems": 3, "maxItems": 3},
                "voxel_volume_ml": _VOL,
                "slices_with_myocardium": _COUNT,
            }
        ),
        "lv": _object(
            {
                "myocardium_voxels": _COUNT,
                "myocardium_volume_ml": _VOL,
                "myocardium_mass_g": _VOL,
                "cavity_volume_ml": _VOL,
            }
        ),
        "infarct": _object(_AMOUNT),
        "no_reflow": _object({**_AMOUNT, "percent_infarct": _PCT}),
        "classification": _object({"label": {"type": "string", "enum": ["normal", "pathological"]}, "rule": _STR}),
        "transmurality": _object(
            {
                "rays": _COUNT,
                "mean_percent": _nullable(_PCT),
                "mean_infarcted_rays_percent": _nullable(_PCT),
                "max_percent": _nullable(_PCT),
            }
        ),
        "segments": {"type": "array", "items": _SEGMENT, "minItems": 17, "maxItems": 17},
        "infarcted_segments": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 17}},
        "n_infarcted_segments": {"type": "integer", "minimum": 0, "maximum": 17},
        "nonviable_segments": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 17}},
        "territories": {
            "type": "object",
            "required": ["LAD", "RCA", "LCX"],
            "properties": {
                name: _object(
                    {
                        "segments": {"type": "array", "items": {"type": "integer"}},
                        "infarct_volume_ml": _VOL,
                        "infarct_percent": _PCT,
                        "infarcted_segments": {"type": "array", "items": {"type": "integer"}},
                    }
                )
                for name in ("LAD", "RCA", "LCX")
            },
        },
        "slices": {"type": "array", "items": _SLICE, "minItems": 1},
        "classical": _CLASSICAL,
        "warnings": {"type": "array", "items": _STR},
        "timing_s": _VOL,
    }
)

_NULLABLE_STR = {"type": ["string", "null"]}

#: The report schema as a Python dict (JSON Schema draft-07).
SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": SCHEMA_ID,
    "version": SCHEMA_VERSION,
    "title": "cardiac_mi LGE infarct report",
    "description": "Infarct quantification of one cardiac LGE MRI study (research use only).",
    **_object(
        {
            "schema": {"type": "string", "const": SCHEMA_ID},
            "schema_version": {"type": "string", "const": SCHEMA_VERSION},
            "created": _STR,
            "software": _object({"name": _STR, "version": _STR}),
            "inputs": _object({"image": _STR, "label": _STR}),
            "study": _object(
                {
                    "source": {"type": "string", "enum": ["dicom", "nifti"]},
                    "patient_id": _NULLABLE_STR,
                    "patient_name": _NULLABLE_STR,
                    "study_uid": _NULLABLE_STR,
                    "series_uid": _NULLABLE_STR,
                    "study_date": _NULLABLE_STR,
                }
            ),
            "quantification": _QUANTIFICATION,
            "files": {"type": "object", "properties": {}},
            "dicom": _object({"study_uid": _STR, "pdf_sop_instance_uid": _STR, "sr_sop_instance_uid": _NULLABLE_STR}),
            "stored": {
                "type": ["object", "null"],
                "required": ["url", "sop_instance_uids"],
                "properties": {"url": _STR, "sop_instance_uids": {"type": "array", "items": _STR}},
            },
            "disclaimer": _STR,
        },
        required=["schema", "schema_version", "created", "software", "inputs", "study", "quantification", "disclaimer"],
    ),
}


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _simple_errors(value: Any, schema: dict, path: str) -> list[str]:
    """A checker for the keywords this schema uses, for when jsonschema is not installed."""
    where = path or "report"
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, name) for name in names):
            return [f"{where}: expected {' or '.join(names)}, got {type(value).__name__}"]
    errors = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is more than {schema['maximum']}")
    if isinstance(value, dict):
        errors += [f"{where}: {key!r} is a required property" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += _simple_errors(value[key], sub, f"{path}.{key}" if path else key)
    if isinstance(value, (list, tuple)):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for n, item in enumerate(value):
                errors += _simple_errors(item, schema["items"], f"{where}[{n}]")
    return errors


def schema_errors(report: Any, schema: dict = SCHEMA, *, use_jsonschema: bool = True) -> list[str]:
    """Every way ``report`` breaks ``schema``, as ``path: message`` lines (empty when valid)."""
    if use_jsonschema:
        try:
            import jsonschema
        except ImportError:
            use_jsonschema = False
    if not use_jsonschema:
        return _simple_errors(report, schema, "")
    validator = jsonschema.Draft7Validator(schema)
    errors = []
    for error in sorted(validator.iter_errors(report), key=lambda e: list(map(str, e.path))):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path).lstrip(".")
        errors.append(f"{path or 'report'}: {error.message}")
    return errors


def validate(report: Any, schema: dict = SCHEMA) -> None:
    """Raise :class:`InputError` naming every problem when ``report`` does not follow ``schema``."""
    errors = schema_errors(report, schema)
    if errors:
        shown = "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise InputError(f"the report does not follow schema {schema.get('version', '?')}: {shown}")
