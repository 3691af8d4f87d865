-- SMART Backend Services clients (postgres). Keep in step with ../sqlite/.
-- A system that signs its token requests with a private key whose public half (a JWKS) the
-- practice registered here, with the scopes it may ask for.
CREATE TABLE smart_clients (
    id TEXT PRIMARY KEY NOT NULL,
    practice_id TEXT NOT NULL REFERENCES practices (id),
    name TEXT NOT NULL,
    jwks TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX smart_clients_practice ON smart_clients (practice_id);

-- Each accepted assertion's jti until its exp: the primary key is what refuses a replay,
-- across instances.
CREATE TABLE smart_assertion_jtis (
    client_id TEXT NOT NULL REFERENCES smart_clients (id),
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX smart_assertion_jtis_expiry ON smart_assertion_jtis (expires_at);

-- Access tokens issued to SMART clients live beside API tokens (one authenticate path, one
-- authorize), but expire and name the client that holds them.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN smart_client_id TEXT REFERENCES smart_clients (id);
