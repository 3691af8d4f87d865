"""Validates FHIR R4 resources with fhir.resources 6.4 (the R4 line, pydantic 1).

Reads a JSON array of resources on stdin; prints a JSON array of
{"index", "resourceType", "error"} for each resource the library refuses (empty: all valid)."""

import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

assert fhir.resources.__version__.startswith("6.4."), fhir.resources.__version__
resources = json.load(sys.stdin)
errors = []
for index, resource in enumerate(resources):
    kind = resource.get("resourceType")
    try:
        construct_fhir_element(kind, resource)
    except Exception as e:  # pydantic's ValidationError, or an unknown resource type
        errors.append({"index": index, "resourceType": kind, "error": str(e)})
json.dump({"version": fhir.resources.__version__, "checked": len(resources), "errors": errors}, sys.stdout)
