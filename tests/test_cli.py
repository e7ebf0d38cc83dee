"""The ``cannect`` command line as an operator uses it."""

import json
import subprocess
import sys


def cannect(env, *args):
    return subprocess.run([sys.executable, "-m", "cannect.cli", *args], env=env, capture_output=True, text=True)


def test_members_add_list_remove(env):
    did = "did:plc:" + "c" * 24
    added = cannect(env, "members", "add", did, "--handle", "@Alice.Cannect.Space")
    assert added.returncode == 0, added.stderr
    assert "alice.cannect.space" in cannect(env, "members", "list").stdout
    assert cannect(env, "members", "remove", did).stdout.strip() == "removed"
    assert did not in cannect(env, "members", "list").stdout


def test_members_add_rejects_bad_input_clearly(env):
    bad_did = cannect(env, "members", "add", "alice")
    assert bad_did.returncode == 2 and "not a DID" in bad_did.stderr and "Traceback" not in bad_did.stderr
    bad_handle = cannect(env, "members", "add", "did:plc:" + "d" * 24, "--handle", "not a handle")
    assert bad_handle.returncode == 2 and "not a handle" in bad_handle.stderr


def test_status_json_before_anything_ran(env):
    result = cannect(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cursor"] is None and report["lag_seconds"] is None
    assert report["events"] == {"seen": 0, "kept": 0, "rejected": 0, "ignored": 0, "reasons": {}}
    assert {"identity", "ingest"} <= set(report["queues"]) and not any(report["queues"].values())
    assert cannect(env, "status", "--check", "60").returncode == 1


def test_generate_capture_and_replay_validate_their_arguments(env, tmp_path):
    assert cannect(env, "generate-capture", "--out", str(tmp_path / "c.jsonl"), "--events", "0").returncode == 2
    out = cannect(env, "generate-capture", "--out", str(tmp_path / "c.jsonl"), "--events", "500", "--seed", "3")
    assert out.returncode == 0 and "wrote 500 events" in out.stdout
    assert cannect(env, "replay", "--file", str(tmp_path / "missing"), "--port", "1").returncode == 2
    assert cannect(env, "replay", "--file", str(tmp_path / "c.jsonl"), "--port", "1", "--speed", "-1").returncode == 2
