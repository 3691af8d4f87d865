"""Twilio's own RequestValidator, driven by the Rust tests.

Reads a JSON list of cases on stdin and prints a JSON list of results:
  {"op": "sign", "secret", "url", "params": [[name, value], ...], "algorithm"} -> signature
  {"op": "validate", "secret", "url", "params" | "body", "signature", "algorithm"} -> bool
Repeated parameters are passed as a multi-dict (the validator reads them with getall, as
for Flask's MultiDict). A "body" (a JSON string) is validated with bodySHA256 in the URL.
"""

import json
import sys

from twilio.request_validator import RequestValidator


class MultiDict(dict):
    def __init__(self, pairs):
        super().__init__()
        self.pairs = [(k, v) for k, v in pairs]
        for k, v in self.pairs:
            self.setdefault(k, v)

    def getall(self, name):
        return [v for k, v in self.pairs if k == name]


out = []
for case in json.load(sys.stdin):
    validator = RequestValidator(case["secret"])
    algorithm = case.get("algorithm")
    if "body" in case:
        params = case["body"]
    else:
        params = MultiDict(case.get("params", []))
    if case["op"] == "sign":
        out.append(validator.compute_signature(case["url"], params if not isinstance(params, str) else {}, algorithm))
    else:
        out.append(validator.validate(case["url"], params, case["signature"], algorithm))
print(json.dumps(out))
