// Staff passkeys: sign in with one, use one as the second factor, or register one. The
// server's JSON API runs the ceremony; this file only converts between base64url and the
// ArrayBuffers navigator.credentials wants. No inline script: buttons are found by id.
"use strict";
(function () {
  function fromB64url(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      out[i] = raw.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64url(buf) {
    if (!buf) {
      return null;
    }
    var bytes = new Uint8Array(buf);
    var s = "";
    for (var i = 0; i < bytes.length; i++) {
      s += String.fromCharCode(bytes[i]);
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body || {}),
    }).then(function (r) {
      return r.json().then(
        function (json) {
          return { ok: r.ok, json: json };
        },
        function () {
          return { ok: r.ok, json: {} };
        }
      );
    });
  }

  function say(id, text) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = text;
      el.hidden = false;
    }
  }

  // ---- Using a passkey (sign-in, or the second factor) ------------------------------------
  function requestOptions(options) {
    var pk = options.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) {
      c.id = fromB64url(c.id);
    });
    return { publicKey: pk };
  }

  function assertion(cred) {
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        authenticatorData: toB64url(cred.response.authenticatorData),
        clientDataJSON: toB64url(cred.response.clientDataJSON),
        signature: toB64url(cred.response.signature),
        userHandle: toB64url(cred.response.userHandle),
      },
    };
  }

  function useKey(begin, finish, body, status, next) {
    say(status, "Waiting for your passkey…");
    return post(begin, body)
      .then(function (r) {
        if (!r.ok) {
          throw new Error(r.json.detail || "the passkey sign-in could not start");
        }
        return navigator.credentials.get(requestOptions(r.json.options)).then(function (cred) {
          return post(finish, { ceremony_id: r.json.ceremony_id, credential: assertion(cred) });
        });
      })
      .then(function (r) {
        if (!r.ok) {
          throw new Error(r.json.detail || "the passkey was not accepted");
        }
        window.location.assign(next || "/");
      })
      .catch(function (e) {
        say(status, "Passkey sign-in did not work: " + (e && e.message ? e.message : "cancelled") + ". You can use your password and code instead.");
      });
  }

  function nextOf(form) {
    var field = form && form.querySelector("input[name=next]");
    return field && field.value ? field.value : "";
  }

  function wireSignIn() {
    var button = document.getElementById("passkey-sign-in");
    if (!button || !window.PublicKeyCredential) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var form = button.closest("form");
      var email = document.getElementById("email");
      if (!email || !email.value) {
        say("passkey-status", "Enter your email first, then choose Sign in with a passkey.");
        if (email) {
          email.focus();
        }
        return;
      }
      var body = { email: email.value };
      var practice = form && form.querySelector("input[name=practice_id]:checked");
      if (practice) {
        body.practice_id = practice.value;
      }
      useKey("/api/v1/session/passkey", "/api/v1/session/passkey/finish", body, "passkey-status", nextOf(form) || "/");
    });
  }

  function wireMfa() {
    var button = document.getElementById("passkey-mfa");
    if (!button || !window.PublicKeyCredential) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      useKey("/api/v1/session/mfa/passkey", "/api/v1/session/mfa/passkey/finish", {}, "passkey-status", nextOf(button.closest("form")) || "/");
    });
  }

  // ---- Registering a passkey (own account page) ------------------------------------------
  function creationOptions(options) {
    var pk = options.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.user.id = fromB64url(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) {
      c.id = fromB64url(c.id);
    });
    return { publicKey: pk };
  }

  function attestation(cred) {
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        attestationObject: toB64url(cred.response.attestationObject),
        clientDataJSON: toB64url(cred.response.clientDataJSON),
        transports: cred.response.getTransports ? cred.response.getTransports() : null,
      },
    };
  }

  function wireRegister() {
    var button = document.getElementById("passkey-register");
    if (!button || !window.PublicKeyCredential) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      say("passkey-status", "Follow your device's prompt to create the passkey…");
      post("/api/v1/session/passkeys/register", {})
        .then(function (r) {
          if (!r.ok) {
            throw new Error(r.json.detail || "adding a passkey could not start");
          }
          return navigator.credentials.create(creationOptions(r.json.options)).then(function (cred) {
            return post("/api/v1/session/passkeys/register/finish", { ceremony_id: r.json.ceremony_id, credential: attestation(cred) });
          });
        })
        .then(function (r) {
          if (!r.ok) {
            throw new Error(r.json.detail || "the passkey was not accepted");
          }
          window.location.assign("/account");
        })
        .catch(function (e) {
          say("passkey-status", "The passkey was not added: " + (e && e.message ? e.message : "cancelled") + ".");
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireSignIn();
    wireMfa();
    wireRegister();
  });
})();
