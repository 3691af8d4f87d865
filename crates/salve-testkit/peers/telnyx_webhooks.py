"""Telnyx's own webhook verification (telnyx.Telnyx().webhooks.unwrap) and an Ed25519 signer
made with PyNaCl, driven by the Rust tests.

Reads a JSON list of cases on stdin and prints a JSON list of results:
  {"op": "sign", "seed": base64 32 bytes, "timestamp": "...", "payload": "..."} -> base64 signature
  {"op": "unwrap", "public_key": base64, "payload": "...", "headers": {...}}
      -> [true, ""] or [false, "<exception class>"]
"""

import base64
import json
import sys

import telnyx
from nacl.signing import SigningKey

out = []
for case in json.load(sys.stdin):
    if case["op"] == "sign":
        key = SigningKey(base64.b64decode(case["seed"]))
        message = f'{case["timestamp"]}|{case["payload"]}'.encode("utf-8")
        out.append(base64.b64encode(key.sign(message).signature).decode("ascii"))
    else:
        client = telnyx.Telnyx(api_key="x", public_key=case["public_key"])
        try:
            client.webhooks.unwrap(case["payload"], headers=case["headers"], key=case["public_key"])
            out.append([True, ""])
        except Exception as e:  # the test only needs accepted / refused
            out.append([False, type(e).__name__])
print(json.dumps(out))
