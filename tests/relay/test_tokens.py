"""Relay tokens: what the node accepts and what it refuses."""

from __future__ import annotations

import time

import jwt
import pytest

from relay.tokens import (
    AUDIENCE,
    DEV_SECRET,
    ISSUER,
    TokenError,
    authorize,
    bearer_token,
    decode_token,
    issue_token,
)

SECRET = "a-test-secret-that-is-long-enough-for-hs256-and-even-for-hs512-keys!"


def _raw(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 60,
        "room": "visit-42",
        "sub": "u-17",
        "cap": ["publish"],
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm=algorithm)


def test_a_good_token_gives_its_claims() -> None:
    token = issue_token(
        SECRET, room="visit-42", sub="u-17", caps=["publish", "subscribe"], node="relay-1"
    )
    claims = decode_token(token, SECRET)
    assert (claims.room, claims.sub, claims.node) == ("visit-42", "u-17", "relay-1")
    assert claims.caps == {"publish", "subscribe"}
    assert claims.iat is not None


def test_the_dev_secret_signs_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    decode_token(issue_token(DEV_SECRET, room="r", sub="u", caps=["admin"]), DEV_SECRET)
    assert not [w for w in recwarn if "HMAC key" in str(w.message)]


# Each case builds its token when the test runs, not at collection: a token made
# at collection with a one-minute expiry would be stale in a long suite.
BAD_TOKENS = {
    "signature": (
        lambda: _raw({}, secret="another-secret-that-is-long-enough-for-hs256-and-hs512-keys!"),
        "invalid_token",
    ),
    "expired": (lambda: _raw({"exp": int(time.time()) - 30}), "token_expired"),
    "issuer": (lambda: _raw({"iss": "someone-else"}), "invalid_token"),
    "audience": (lambda: _raw({"aud": "telehealth-web"}), "invalid_token"),
    "long-lived": (lambda: _raw({"exp": int(time.time()) + 3600}), "invalid_token"),
    "no-room": (lambda: _raw({"room": None}), "invalid_token"),
    "cap-not-list": (lambda: _raw({"cap": "publish"}), "invalid_token"),
    "no-sub": (lambda: _raw({"sub": None}), "invalid_token"),
    "no-exp": (lambda: _raw({"exp": None}), "invalid_token"),
    "algorithm": (lambda: _raw({}, algorithm="HS512"), "invalid_token"),
    "alg-none": (
        lambda: jwt.encode({"room": "visit-42"}, None, algorithm="none"),
        "invalid_token",
    ),
    "garbage": (lambda: "not.a.jwt", "invalid_token"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens_are_refused_with_401(case: str) -> None:
    make_token, code = BAD_TOKENS[case]

    with pytest.raises(TokenError) as refused:
        decode_token(make_token(), SECRET)

    assert (refused.value.status, refused.value.code) == (401, code)


def test_bearer_header_is_required() -> None:
    for header in (None, "", "Basic abc", "Bearer ", "token abc"):
        with pytest.raises(TokenError) as refused:
            bearer_token(header)
        assert refused.value.status == 401
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"


def test_authorize_checks_room_capability_and_node() -> None:
    claims = decode_token(
        issue_token(SECRET, room="visit-42", sub="u-17", caps=["subscribe"], node="relay-1"),
        SECRET,
    )
    authorize(claims, room="visit-42", cap="subscribe", node_id="relay-1")
    for kwargs, code in (
        ({"room": "visit-43", "cap": "subscribe"}, "wrong_room"),
        ({"room": "visit-42", "cap": "publish"}, "missing_capability"),
        ({"room": "visit-42", "cap": "admin"}, "missing_capability"),
        ({"room": "visit-42", "cap": "subscribe", "node_id": "relay-2"}, "wrong_node"),
    ):
        with pytest.raises(TokenError) as refused:
            authorize(claims, **kwargs)
        assert (refused.value.status, refused.value.code) == (403, code)


def test_unknown_capabilities_cannot_be_issued() -> None:
    with pytest.raises(ValueError, match="unknown"):
        issue_token(SECRET, room="r", sub="u", caps=["root"])
