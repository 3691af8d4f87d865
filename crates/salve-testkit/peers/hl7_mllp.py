"""HL7 v2 messages built with the `hl7` package and sent over MLLP with its MLLPClient, for the
HL7 feed's tests.

Reads one JSON object on stdin:
  {"host": "127.0.0.1", "port": N, "messages": [spec, ...], "ca_pem": optional}
(with "ca_pem", the MLLPClient's socket is wrapped in TLS, verifying "localhost" against that CA)
where each spec is one of
  {"msh": {"facility": ..., "type": "SIU^S12", "control_id": ..., "version": "2.5.1"},
   "segments": [["PID", [["3.1.1", "12345"], ["3.1.5", "MR"], ...]], ...]}
      a message built segment by segment with hl7's containers and assign_field
      ("F.R.C" = field, repetition, component)
  {"again": i}          the i-th message of this run, sent again byte for byte
  {"raw": "text"}       text sent as it is (not HL7 at all, for the malformed cases)
All are sent on one connection, in order. Prints a JSON list, one object per message:
  {"code": MSA-1, "control_id": MSA-2, "text": MSA-3, "error": ERR-3.1 or "",
   "location": ERR-2 or "", "ack_type": MSH-9, "sent": the message as sent}
"""

import datetime
import json
import ssl
import sys

import hl7
from hl7.client import MLLPClient


def build(spec):
    message = hl7.Message(separator="\r", sequence=[])
    msh = message.create_segment([message.create_field(["MSH"])])
    h = spec["msh"]
    msh.assign_field("|", 1)
    msh.assign_field("^~\\&", 2)
    msh.assign_field(h.get("application", "EPIC"), 3)
    msh.assign_field(h["facility"], 4)
    msh.assign_field("SALVE", 5)
    msh.assign_field("SALVE", 6)
    msh.assign_field(datetime.datetime.utcnow().strftime("%Y%m%d%H%M%S"), 7)
    kind, trigger = h["type"].split("^")
    msh.assign_field(kind, 9, 1, 1)
    msh.assign_field(trigger, 9, 1, 2)
    msh.assign_field(h["control_id"], 10)
    msh.assign_field("P", 11)
    msh.assign_field(h.get("version", "2.5.1"), 12)
    message.append(msh)
    for name, fields in spec["segments"]:
        segment = message.create_segment([message.create_field([name])])
        for path, value in fields:
            parts = [int(p) for p in path.split(".")]
            segment.assign_field(value, *parts)
        message.append(segment)
    return str(message)


def field(message, key):
    try:
        return str(message[key])
    except (KeyError, IndexError):
        return ""


def has(message, segment):
    try:
        return bool(message.segments(segment))
    except KeyError:
        return False


def main():
    job = json.load(sys.stdin)
    sent = []
    out = []
    with MLLPClient(job["host"], job["port"]) as client:
        if job.get("ca_pem"):
            context = ssl.create_default_context(cadata=job["ca_pem"])
            client.socket = context.wrap_socket(client.socket, server_hostname="localhost")
        for spec in job["messages"]:
            if "again" in spec:
                text = sent[spec["again"]]
            elif "raw" in spec:
                text = spec["raw"]
            else:
                text = build(spec)
                # What we built is HL7 the package itself reads back.
                hl7.parse(text)
            sent.append(text)
            reply = client.send_message(text)
            ack = hl7.parse(reply.decode("utf-8").strip("\x0b\x1c\r\n"))
            out.append(
                {
                    "code": field(ack, "MSA.1"),
                    "control_id": field(ack, "MSA.2"),
                    "text": field(ack, "MSA.3"),
                    "error": field(ack, "ERR.3.1") if has(ack, "ERR") else "",
                    "location": str(ack.segment("ERR")(2)) if has(ack, "ERR") else "",
                    "ack_type": str(ack.segment("MSH")(9)),
                    "sent": text,
                }
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
