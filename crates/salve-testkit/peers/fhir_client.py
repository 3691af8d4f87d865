"""Reads Salve's FHIR API with fhirpy (a FHIR client library): search with paging, read.

stdin: {"url", "token", "count", "patient"}. Prints what it found as JSON."""

import json
import sys

from fhirpy import SyncFHIRClient

args = json.load(sys.stdin)
client = SyncFHIRClient(args["url"], authorization="Bearer " + args["token"])
# fetch_all follows the Bundle's `next` links page by page.
patients = client.resources("Patient").limit(args["count"]).fetch_all()
first_page = client.resources("Patient").limit(args["count"]).fetch()
one = client.reference("Patient", args["patient"]).to_resource()
communications = client.resources("Communication").search(patient=args["patient"]).fetch_all()

json.dump(
    {
        "patients": [p.id for p in patients],
        "first_page": [p.id for p in first_page],
        "read": {"id": one.id, "family": one["name"][0]["family"]},
        "communications": [c.id for c in communications],
        "communication_subjects": sorted({c["subject"]["reference"] for c in communications}),
    },
    sys.stdout,
)
