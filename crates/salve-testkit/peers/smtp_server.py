"""A real SMTP server (aiosmtpd) for the SMTP provider's tests.

    smtp_server.py --mode starttls|implicit|plaintext [--cert PEM --key PEM]

Listens on 127.0.0.1 on a free port and prints one JSON object per line on stdout:
  {"event": "ready", "port": N}                       once it accepts connections
  {"event": "auth", "login": ..., "ok": bool, "tls": version or null}
                                                      every AUTH attempt that reached us
  {"event": "mail", "from": ..., "tls": ...}          every MAIL FROM
  {"event": "message", "mail_from": ..., "rcpt_tos": [...], "tls": ..., "cipher": ...,
   "authenticated": bool, "login": ..., "content": raw message, "body": decoded body}
                                                      every message accepted (before the 250)
  {"event": "stopped"}                                when stdin closes: then it exits

Modes:
  starttls   STARTTLS offered and required before anything else; AUTH only after TLS.
  implicit   TLS from the first byte (the Controller's ssl_context).
  plaintext  no TLS at all, and AUTH offered in plaintext: a client that sent its password
             anyway would show up as an "auth" event.

Recipients that make the server misbehave on purpose:
  reject-permanent@...   RCPT answered "550 5.1.1 Mailbox unavailable"
  reject-transient@...   RCPT answered "451 4.3.0 Try again later"
  drop-after-data@...    the message is recorded, then the connection is closed without a reply
  hang-after-data@...    the message is recorded, then no reply ever comes
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import ssl
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = b"salve-notify"
PASSWORD = b"correct horse battery staple"


def emit(**event):
    print(json.dumps(event), flush=True)


def tls_of(server):
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    if ssl_object is None:
        return None, None
    cipher = ssl_object.cipher()
    return ssl_object.version(), cipher[0] if cipher else None


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER
        and auth_data.password == PASSWORD
    )
    login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
    emit(event="auth", mechanism=mechanism, login=login, ok=ok, tls=tls_of(server)[0])
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class Handler:
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        emit(event="mail", **{"from": address}, tls=tls_of(server)[0])
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local == "reject-permanent":
            return "550 5.1.1 Mailbox unavailable"
        if local == "reject-transient":
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        version, cipher = tls_of(server)
        login = getattr(session.auth_data, "login", None)
        emit(
            event="message",
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            tls=version,
            cipher=cipher,
            authenticated=bool(session.authenticated),
            login=login.decode() if isinstance(login, bytes) else None,
            content=content.decode("utf-8", "replace"),
            body=body.get_content() if body is not None else None,
            headers=[[name, str(value)] for name, value in parsed.items()],
        )
        local = envelope.rcpt_tos[0].split("@", 1)[0] if envelope.rcpt_tos else ""
        if local == "drop-after-data":
            server.transport.close()
            await asyncio.Event().wait()  # cancelled when the connection is lost
        if local == "hang-after-data":
            await asyncio.Event().wait()  # never set: the client has to time out
        return "250 2.0.0 Queued"


class FreePortController(Controller):
    """aiosmtpd's Controller on port 0: the real port is read back before the server is
    triggered (Controller only knows the port it was given)."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["starttls", "implicit", "plaintext"], required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    # The plaintext mode's "AUTH without TLS" is deliberate; aiosmtpd's per-connection log
    # lines are noise in test output.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    context = None
    if args.mode != "plaintext":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)

    smtp = dict(
        auth_required=True,
        authenticator=authenticator,
        # aiosmtpd only counts STARTTLS as TLS: under implicit TLS the whole connection is
        # encrypted, and in plaintext mode AUTH is offered without TLS on purpose.
        auth_require_tls=args.mode == "starttls",
    )
    if args.mode == "starttls":
        smtp.update(tls_context=context, require_starttls=True)
    ssl_context = context if args.mode == "implicit" else None

    controller = FreePortController(
        Handler(),
        hostname="127.0.0.1",
        port=0,
        ssl_context=ssl_context,
        server_hostname="smtp.test",
        **smtp,
    )
    controller.start()
    emit(event="ready", port=controller.port)
    sys.stdin.read()  # until the test closes stdin
    controller.stop()
    emit(event="stopped")


if __name__ == "__main__":
    main()
