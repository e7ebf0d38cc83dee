"""Login with the user's PDS, app sessions (refresh rotation and reuse detection, absolute
lifetime, logout), token encryption. Sockets closing when a session ends: tests/test_ws.py.

The PDS is tests/fakes/pds.py, a real XRPC server; PostgreSQL and Redis are real.
"""

from __future__ import annotations

import hashlib
import time

import orjson
import pytest
import redis as redis_lib
from cryptography.fernet import Fernet
from sqlalchemy import text


from services.crypto import UnreadableToken, derive_key, token_cipher
from services.pds import PdsClient, PdsError, PdsUnavailable
from services.realtime import STREAM
from services.tokens import decode_access_token, revoked_session_key

from conftest import JWT_SECRET
PASSWORD = "correct-horse-battery"


@pytest.fixture
def alice(fake_pds):
    return fake_pds.add_account("alice.test", PASSWORD)


def login(api, identifier: str, password: str = PASSWORD, **headers):
    return api.post("/api/auth/login", json={"identifier": identifier, "password": password}, headers=headers)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def rows(session, query: str, **params) -> list:
    result = session.execute(text(query), params)
    found = result.all() if result.returns_rows else []
    session.commit()
    return found


def assert_problem(response, status: int):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == status


def test_login_registers_a_member_and_keeps_pds_tokens_encrypted(api, session, fake_pds, alice):
    response = login(api, "@Alice.Test", **{"User-Agent": "cannect-ios/1.0"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["did"] == alice.did and body["handle"] == "alice.test"
    assert body["expiresIn"] == 3600 and body["accessToken"] and body["refreshToken"]

    [member] = rows(session, "SELECT did, handle, is_cannect_user, member_since FROM profiles")
    assert member.did == alice.did and member.handle == "alice.test" and member.is_cannect_user

    [stored] = rows(session, "SELECT * FROM pds_sessions")
    pds_tokens = fake_pds.live_tokens(alice.did)
    assert len(pds_tokens) == 2
    stored_bytes = b"".join(bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
                            for value in stored)
    for token in pds_tokens:
        assert token.encode() not in stored_bytes
    cipher = token_cipher(None, JWT_SECRET)
    assert {cipher.decrypt(stored.access_jwt), cipher.decrypt(stored.refresh_jwt)} == set(pds_tokens)
    assert stored.pds_url == fake_pds.url

    [app_session] = rows(session, "SELECT * FROM app_sessions")
    assert app_session.refresh_token_hash == hashlib.sha256(body["refreshToken"].encode()).hexdigest()
    assert body["refreshToken"] not in str(tuple(app_session))
    assert app_session.user_agent == "cannect-ios/1.0" and app_session.revoked_at is None


def test_login_by_did_and_again_keeps_one_member_and_fresh_tokens(api, session, fake_pds, alice):
    assert login(api, "alice.test").status_code == 200
    assert login(api, alice.did).status_code == 200
    assert rows(session, "SELECT count(*) FROM profiles")[0][0] == 1
    [stored] = rows(session, "SELECT access_jwt FROM pds_sessions")
    assert token_cipher(None, JWT_SECRET).decrypt(stored.access_jwt) in fake_pds.live_tokens(alice.did)
    assert rows(session, "SELECT count(*) FROM app_sessions WHERE revoked_at IS NULL")[0][0] == 2


def test_wrong_password_or_unknown_account_is_401_and_stores_nothing(api, session, alice):
    for identifier, password in (("alice.test", "wrong"), ("nobody.test", PASSWORD)):
        response = login(api, identifier, password)
        assert_problem(response, 401)
        assert "Wrong identifier or password" in response.json["detail"]
    for table in ("profiles", "pds_sessions", "app_sessions"):
        assert rows(session, f"SELECT count(*) FROM {table}")[0][0] == 0


def test_an_inactive_account_cannot_sign_in(api, session, alice):
    alice.active, alice.status = False, "deactivated"
    response = login(api, "alice.test")
    assert_problem(response, 403)
    assert "deactivated" in response.json["detail"]
    assert rows(session, "SELECT count(*) FROM pds_sessions")[0][0] == 0


@pytest.mark.parametrize("failure", ["stopped", "503", "500", "502 html"])
def test_pds_down_is_503_with_retry_after(api, session, fake_pds, alice, failure):
    if failure == "stopped":
        fake_pds.stop()
    elif failure == "502 html":
        fake_pds.fail_next(1, status=502, error=None)
    else:
        fake_pds.fail_next(1, status=int(failure))
    response = login(api, "alice.test")
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert rows(session, "SELECT count(*) FROM pds_sessions")[0][0] == 0


def test_pds_rate_limit_is_429_with_its_retry_after(api, fake_pds, alice):
    fake_pds.rate_limit_next(1, reset_after=120)
    response = login(api, "alice.test")
    assert_problem(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 120
    assert login(api, "alice.test").status_code == 200


def test_login_attempts_are_limited_per_ip(make_api, alice):
    api = make_api(RATE_LIMIT_LOGIN="3/minute")
    assert [login(api, "alice.test", "wrong").status_code for _ in range(3)] == [401, 401, 401]
    response = login(api, "alice.test")
    assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    other_ip = api.post("/api/auth/login", json={"identifier": "alice.test", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other_ip.status_code == 200


def refresh(api, token: str):
    return api.post("/api/auth/refresh", json={"refreshToken": token})


def ended_sessions(redis_url: str) -> list[str]:
    """The session ids announced on the realtime stream as ended, in order."""
    entries = redis_lib.Redis.from_url(redis_url).xrange(STREAM)
    return [orjson.loads(fields[b"e"])["sessionId"] for _, fields in entries if fields[b"t"] == b"session_ended"]


def test_refresh_rotates_the_refresh_token(api, session, alice):
    first = login(api, "alice.test").json
    second = refresh(api, first["refreshToken"])
    assert second.status_code == 200, second.json
    assert second.json["refreshToken"] != first["refreshToken"] and second.json["did"] == alice.did
    assert second.json["handle"] == "alice.test"
    third = refresh(api, second.json["refreshToken"])
    assert third.status_code == 200
    [stored] = rows(session, "SELECT refresh_token_hash, previous_refresh_token_hash FROM app_sessions")
    assert stored == (hashlib.sha256(third.json["refreshToken"].encode()).hexdigest(),
                      hashlib.sha256(second.json["refreshToken"].encode()).hexdigest())
    assert_problem(refresh(api, "never-issued"), 401)
    # A token two rotations old is merely unknown: nothing is revoked.
    assert_problem(refresh(api, first["refreshToken"]), 401)
    assert refresh(api, third.json["refreshToken"]).status_code == 200


def test_a_reused_refresh_token_revokes_the_whole_session(api, session, redis_url, alice):
    phone, laptop = login(api, "alice.test").json, login(api, "alice.test").json
    rotated = refresh(api, phone["refreshToken"]).json  # the phone's client got the new pair
    phone_session = decode_access_token(rotated["accessToken"], JWT_SECRET)["sid"]

    stolen = refresh(api, phone["refreshToken"])  # someone else held the old one
    assert_problem(stolen, 401)
    assert "already used" in stolen.json["detail"]
    # The whole session is gone: the newest refresh token and every access token of it too,
    # and its sockets are told to close (the session_ended event).
    assert_problem(refresh(api, rotated["refreshToken"]), 401)
    for token in (rotated["accessToken"], phone["accessToken"]):
        assert_problem(api.get("/api/feed/following", headers=bearer(token)), 401)
    assert ended_sessions(redis_url) == [phone_session]
    assert redis_lib.Redis.from_url(redis_url).ttl(revoked_session_key(phone_session)) > 3600
    [revoked] = rows(session, "SELECT revoked_at FROM app_sessions WHERE id = :id", id=phone_session)
    assert revoked.revoked_at is not None  # committed though the request failed

    # The laptop's session is another one: untouched.
    assert api.get("/api/feed/following", headers=bearer(laptop["accessToken"])).status_code == 200
    assert refresh(api, laptop["refreshToken"]).status_code == 200
    assert rows(session, "SELECT count(*) FROM pds_sessions")[0][0] == 1


def test_reuse_of_the_last_session_forgets_the_pds_tokens(api, session, alice):
    first = login(api, "alice.test").json
    assert refresh(api, first["refreshToken"]).status_code == 200
    assert_problem(refresh(api, first["refreshToken"]), 401)
    assert rows(session, "SELECT count(*) FROM pds_sessions")[0][0] == 0
    assert_problem(refresh(api, first["refreshToken"]), 401)  # again: the session is already revoked


def test_a_session_ends_at_its_absolute_lifetime(make_api, session, alice):
    api = make_api(SESSION_MAX_AGE_DAYS="2", REFRESH_TTL_DAYS="30")
    tokens = login(api, "alice.test").json
    [created] = rows(session, "SELECT created_at, expires_at FROM app_sessions")
    assert (created.expires_at - created.created_at).days == 2  # never past the absolute lifetime

    # Ten minutes before the end, a refresh slides no further than the end, and the access
    # token does not outlive the session.
    rows(session, "UPDATE app_sessions SET created_at = now() - interval '2 days' + interval '10 minutes'")
    fresh = refresh(api, tokens["refreshToken"])
    assert fresh.status_code == 200, fresh.json
    assert 500 <= fresh.json["expiresIn"] <= 600
    claims = decode_access_token(fresh.json["accessToken"], JWT_SECRET)
    assert claims["exp"] <= time.time() + 600
    [ends] = rows(session, "SELECT expires_at - created_at AS age FROM app_sessions")
    assert ends.age.days == 2 and ends.age.seconds == 0

    # Past it, the session is over however recently it was refreshed: sign in again.
    rows(session, "UPDATE app_sessions SET created_at = now() - interval '2 days 1 second', "
                  "expires_at = now() + interval '1 day'")
    over = refresh(api, fresh.json["refreshToken"])
    assert_problem(over, 401)
    assert "sign in again" in over.json["detail"]


def test_an_expired_refresh_token_is_401(api, session, alice):
    tokens = login(api, "alice.test").json
    rows(session, "UPDATE app_sessions SET expires_at = now() - interval '1 second'")
    assert_problem(api.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}), 401)
    assert_problem(api.post("/api/auth/logout", headers=bearer(tokens["accessToken"])), 401)


def test_logout_ends_the_session_and_its_tokens(api, session, redis_url, alice):
    phone = login(api, "alice.test").json
    laptop = login(api, "alice.test").json

    response = api.post("/api/auth/logout", headers=bearer(phone["accessToken"]))
    assert response.status_code == 200 and response.json == {"signedOut": True}
    # Every web process closes the session's sockets (tests/test_ws.py has them closed).
    assert ended_sessions(redis_url) == [decode_access_token(phone["accessToken"], JWT_SECRET)["sid"]]
    assert_problem(api.post("/api/auth/logout", headers=bearer(phone["accessToken"])), 401)
    assert_problem(api.post("/api/follow", json={"did": "did:plc:" + "a" * 24},
                            headers=bearer(phone["accessToken"])), 401)
    assert_problem(api.post("/api/auth/refresh", json={"refreshToken": phone["refreshToken"]}), 401)
    # Read endpoints refuse the signed-out token too (a signed-out token is not anonymity).
    assert_problem(api.get("/api/post/at://did:plc:x/app.bsky.feed.post/a", headers=bearer(phone["accessToken"])), 401)
    assert api.get("/api/post/at://did:plc:x/app.bsky.feed.post/a", headers=bearer(laptop["accessToken"])).status_code == 404

    # The other device is still signed in, so the PDS tokens stay; its logout drops them.
    assert rows(session, "SELECT count(*) FROM pds_sessions")[0][0] == 1
    assert api.post("/api/auth/logout", headers=bearer(laptop["accessToken"])).status_code == 200
    assert rows(session, "SELECT count(*) FROM pds_sessions")[0][0] == 0
    assert rows(session, "SELECT is_cannect_user FROM profiles")[0][0]  # still a member


def test_logout_needs_a_valid_bearer_token(api):
    assert_problem(api.post("/api/auth/logout"), 401)
    assert_problem(api.post("/api/auth/logout", headers=bearer("not-a-jwt")), 401)
    assert_problem(api.post("/api/auth/logout", headers={"Authorization": "Basic abc"}), 401)


@pytest.mark.parametrize("path, body", [
    ("/api/auth/login", {}),
    ("/api/auth/login", {"identifier": "alice.test"}),
    ("/api/auth/login", {"identifier": "", "password": "x"}),
    ("/api/auth/login", {"identifier": 5, "password": "x"}),
    ("/api/auth/login", {"identifier": "alice.test", "password": "x", "extra": 1}),
    ("/api/auth/login", {"identifier": "a" * 3000, "password": "x"}),
    ("/api/auth/login", ["alice.test", "x"]),
    ("/api/auth/login", "not json"),
    ("/api/auth/login", '{"identifier": "\\ud800", "password": "x"}'),
    ("/api/auth/refresh", {}),
    ("/api/auth/refresh", {"refreshToken": None}),
    ("/api/auth/refresh", {"refreshToken": "x" * 600}),
])
def test_bad_input_is_a_422_problem(api, path, body):
    if isinstance(body, str):
        response = api.post(path, data=body, content_type="application/json")
    else:
        response = api.post(path, json=body)
    assert_problem(response, 422)


def test_openapi_documents_the_auth_endpoints(api):
    paths = api.get("/api/openapi.json").json["paths"]
    assert {"/api/auth/login", "/api/auth/refresh", "/api/auth/logout"} <= set(paths)
    assert "401" in paths["/api/auth/login"]["post"]["responses"]


# -- the PDS client and the token cipher on their own ---------------------------------------

def test_pds_client_speaks_xrpc_and_reports_errors(fake_pds, alice):
    client = PdsClient(fake_pds.url)
    answer = client.create_session("alice.test", PASSWORD)
    record = {"$type": "app.bsky.graph.follow", "subject": "did:plc:" + "b" * 24, "createdAt": "2026-01-01T00:00:00Z"}
    created = client.create_record(answer["accessJwt"], alice.did, "app.bsky.graph.follow", record)
    rkey = created["uri"].rsplit("/", 1)[1]
    assert len(rkey) == 13 and created["cid"].startswith("bafyrei")
    assert fake_pds.list_records(alice.did, "app.bsky.graph.follow")[rkey]["value"] == record
    client.delete_record(answer["accessJwt"], alice.did, "app.bsky.graph.follow", rkey)
    client.delete_record(answer["accessJwt"], alice.did, "app.bsky.graph.follow", rkey)  # idempotent
    assert fake_pds.list_records(alice.did, "app.bsky.graph.follow") == {}

    fake_pds.expire_access_tokens()
    with pytest.raises(PdsError) as expired:
        client.create_record(answer["accessJwt"], alice.did, "app.bsky.graph.follow", record)
    assert (expired.value.status, expired.value.error) == (400, "ExpiredToken") and expired.value.token_rejected
    renewed = client.refresh_session(answer["refreshJwt"])
    assert renewed["did"] == alice.did and renewed["accessJwt"] != answer["accessJwt"]
    with pytest.raises(PdsError) as spent:
        client.refresh_session(answer["refreshJwt"])
    assert spent.value.status == 400
    with pytest.raises(PdsError) as wrong:
        client.create_session("alice.test", "wrong")
    assert (wrong.value.status, wrong.value.error) == (401, "AuthenticationRequired")
    client.close()


def test_pds_client_timeouts_and_refused_connections_are_unavailable(fake_pds, alice):
    fake_pds.stall_next(1, seconds=3)
    client = PdsClient(fake_pds.url, timeout=0.2)
    with pytest.raises(PdsUnavailable):
        client.create_session("alice.test", PASSWORD)
    fake_pds.stop()
    with pytest.raises(PdsUnavailable):
        PdsClient(fake_pds.url).create_session("alice.test", PASSWORD)


def test_token_cipher_uses_the_key_or_derives_one_from_jwt_secret():
    derived = token_cipher(None, JWT_SECRET)
    blob = derived.encrypt("secret-token")
    assert b"secret-token" not in blob and derived.decrypt(blob) == "secret-token"
    assert Fernet(derive_key(JWT_SECRET)).decrypt(blob) == b"secret-token"

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_blob = token_cipher(old, JWT_SECRET).encrypt("t")
    rotated = token_cipher(f"{new},{old}", JWT_SECRET)
    assert rotated.decrypt(old_blob) == "t"  # old tokens still read after a key rotation
    assert token_cipher(new, JWT_SECRET).decrypt(rotated.encrypt("t")) == "t"
    with pytest.raises(UnreadableToken):
        token_cipher(new, JWT_SECRET).decrypt(old_blob)
    with pytest.raises(UnreadableToken):
        derived.decrypt(old_blob)
    with pytest.raises(ValueError, match="TOKEN_ENCRYPTION_KEY"):
        token_cipher("not-a-key", JWT_SECRET)
