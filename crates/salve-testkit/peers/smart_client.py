"""A SMART backend-services client built on PyJWT and cryptography, as an EHR integration
would write it. `keys` generates an RSA (RS384) and a P-384 (ES384) key and prints the public
JWK Set to register plus the private keys; `sign` signs client assertions with them."""

import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa-1", alg="RS384", use="sig")
    ec_jwk.update(kid="ec-1", alg="ES384", use="sig")
    return {
        "jwks": {"keys": [rsa_jwk, ec_jwk]},
        "private": {"rsa-1": pem(rsa_key), "ec-1": pem(ec_key)},
    }


def sign(case):
    return jwt.encode(
        case["claims"], case["pem"], algorithm=case["alg"], headers={"kid": case["kid"]}
    )


def main():
    request = json.load(sys.stdin)
    if request["op"] == "keys":
        out = keys()
    else:
        out = [sign(case) for case in request["cases"]]
    json.dump(out, sys.stdout)


main()
