"""Writes to Salve's FHIR API with fhirpy (a FHIR client library): create a Patient, change
it (PUT), read it back, and create it again conditionally on its MRN (fhirpy's get_or_create
sends the condition as search parameters of the POST).

stdin: {"url", "token", "patient"}. Prints what happened as JSON."""

import json
import sys

from fhirpy import SyncFHIRClient

args = json.load(sys.stdin)
client = SyncFHIRClient(args["url"], authorization="Bearer " + args["token"])
patient = client.resource("Patient", **args["patient"])
patient.save()
created = {"id": patient.id, "version": patient["meta"]["versionId"]}
patient["name"][0]["family"] = "Rivera"
patient.save()
updated = {"id": patient.id, "version": patient["meta"]["versionId"]}
read = client.reference("Patient", patient.id).to_resource()
mrn = args["patient"]["identifier"][0]["value"]
again, was_created = (
    client.resources("Patient")
    .search(identifier=mrn)
    .get_or_create(client.resource("Patient", **args["patient"]))
)

json.dump(
    {
        "created": created,
        "updated": updated,
        "read": {"id": read.id, "family": read["name"][0]["family"]},
        "conditional": {"id": again.id, "created": was_created},
    },
    sys.stdout,
)
