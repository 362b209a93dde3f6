"""``chainlog verify-proof`` and ``chainlog log-key``: what they fetch, exit codes
and output, against an API faked over an in-memory log (the checks themselves
are tested in libs/common/tests/test_proofcheck.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from libs.cli import main
from libs.cli.main import ProofApiError, app
from libs.common.checkpoint import generate_key, parse_verifier_key, workspace_origin
from libs.common.tests.test_proofcheck import KEY_NAME, OTHER_WS, VKEY, WS, Log, b64, log

runner = CliRunner()
ENV = {"CHAINLOG_API_KEY": "cl_read_key", "CHAINLOG_LOG_KEY": ""}


class FakeApi:
    """The proof endpoints of the API over ``log``; ``latest`` overrides its checkpoint."""

    def __init__(self, lg: Log) -> None:
        self.log = lg
        self.latest: str | None = None
        self.events: dict[str, dict[str, Any]] = {}  # served instead of the log's
        self.calls: list[tuple[str, dict[str, Any] | None]] = []
        self.verified: dict[str, object] = {
            "valid": True,
            "events_checked": lg.size,
            "first_seq": 1,
            "last_seq": lg.size,
            "head_hash": "00" * 32,
            "breaks": [],
        }

    def __call__(
        self,
        api_url: str,
        api_key: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = 60,
    ) -> dict[str, object]:
        assert api_key == "cl_read_key"
        self.calls.append((path, params))
        lg = self.log
        if path == "/api/v1/verify":
            return self.verified
        if path == "/api/v1/log-key":
            key = parse_verifier_key(VKEY)
            return {
                "origin": workspace_origin(lg.ws),
                "verifier_key": VKEY,
                "public_key": b64(key.public_key),
                "algorithm": "Ed25519",
            }
        if path == "/api/v1/checkpoints/latest":
            note = self.latest or lg.checkpoint()
            return {"size": lg.size, "origin": workspace_origin(lg.ws), "checkpoint": note}
        if path == "/api/v1/proofs/consistency":
            assert params is not None
            m, n = params["first"], params["second"]
            return {"first": m, "second": n, "proof": lg.consistency(m, n)}
        if path == "/api/v1/proofs/inclusion":
            assert params is not None
            seq = next(e["seq"] for e in lg.events if e["id"] == params["event_id"])
            size = params["tree_size"]
            return {"seq": seq, "tree_size": size, "audit_path": lg.inclusion(seq, size)}
        if path.startswith("/api/v1/events/"):
            event_id = path.rsplit("/", 1)[1]
            if event_id in self.events:
                return self.events[event_id]
            for event in lg.events:
                if event["id"] == event_id:
                    return dict(event)
        raise ProofApiError(f"GET {path}: 404: not found")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi(log(100))
    monkeypatch.setattr(main, "_proof_api", fake)
    return fake


def _note(tmp: Path, note: str, name: str = "cp.txt") -> Path:
    path = tmp / name
    path.write_bytes(note.encode("utf-8"))
    return path


def _paths(api: FakeApi) -> list[str]:
    return [path for path, _ in api.calls]


def test_consistency_passes_and_saves_the_new_checkpoint(tmp_path: Path, api: FakeApi) -> None:
    kept = _note(tmp_path, api.log.checkpoint(60))
    key_file = tmp_path / "log.key"
    key_file.write_text(VKEY + "\n")
    args = ["verify-proof", "consistency", "--old", str(kept), "--key", str(key_file)]
    done = runner.invoke(app, [*args, "--save", str(kept)], env=ENV)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("CONSISTENT: size 100 extends size 60\n")
    assert _paths(api) == ["/api/v1/checkpoints/latest", "/api/v1/proofs/consistency"]
    assert api.calls[1][1] == {"first": 60, "second": 100}
    assert "\n100\n" in kept.read_text() and not Path(f"{kept}.tmp").exists()
    # Again, from the saved one: the same size needs no proof.
    api.calls.clear()
    done = runner.invoke(app, [*args, "--json"], env=ENV)
    doc = json.loads(done.stdout)
    assert done.exit_code == 0 and doc["ok"] and doc["reason"] == "same size 100 and root"
    assert _paths(api) == ["/api/v1/checkpoints/latest"]


def test_consistency_failures_exit_1_and_keep_the_old_file(tmp_path: Path, api: FakeApi) -> None:
    honest = api.log
    old_note = honest.checkpoint()
    cases = [
        (honest.rebuilt(90).checkpoint(), "shrunk", "90 < 100 (events deleted?)"),
        (honest.rebuilt(100, 100, action="x").checkpoint(), "fork", "size 100"),
        (log(30, OTHER_WS).checkpoint(), "origin_mismatch", OTHER_WS),
        (Log(WS, generate_key(KEY_NAME)[0]).add(120).checkpoint(), "bad_signature", "new"),
    ]
    for latest, code, reason in cases:
        kept = _note(tmp_path, old_note)
        api.latest = latest
        done = runner.invoke(
            app,
            ["verify-proof", "consistency", "--old", str(kept), "--key", VKEY, "--save", str(kept)],
            env=ENV,
        )
        assert done.exit_code == 1, (code, done.output)
        assert done.stdout.startswith(f"FAILED ({code}): ") and reason in done.stdout
        assert kept.read_text() == old_note
        assert "/api/v1/proofs/consistency" not in _paths(api)
    # History rewritten and the tree rebuilt: the server's proof cannot pass.
    api.log = honest.rebuilt(100, 42, actor_id="mallory").add(10)
    api.latest = None
    done = runner.invoke(
        app, ["verify-proof", "consistency", "--old", str(kept), "--key", VKEY], env=ENV
    )
    assert done.exit_code == 1 and done.stdout.startswith("FAILED (inconsistent): ")
    assert api.calls[-1] == ("/api/v1/proofs/consistency", {"first": 100, "second": 110})


def test_consistency_without_old_keeps_a_first_checkpoint(tmp_path: Path, api: FakeApi) -> None:
    first = tmp_path / "first.txt"
    base = ["verify-proof", "consistency", "--key", VKEY]
    done = runner.invoke(
        app, [*base, "--save", str(first), "--origin", f"chainlog.local/{WS}"], env=ENV
    )
    assert done.exit_code == 0 and done.stdout.startswith("SIGNED: signed by the key: size 100")
    assert first.read_text().startswith(f"chainlog.local/{WS}\n100\n")
    other = tmp_path / "other.txt"
    done = runner.invoke(app, [*base, "--save", str(other), "--origin", f"x/{WS}"], env=ENV)
    assert done.exit_code == 1 and "origin_mismatch" in done.stdout and not other.exists()
    done = runner.invoke(app, base, env=ENV)
    assert done.exit_code == 2 and "give --old, --save or both" in done.stderr


def test_consistency_usage_and_api_errors_exit_2(
    tmp_path: Path, api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _note(tmp_path, api.log.checkpoint(50))
    base = ["verify-proof", "consistency", "--old", str(kept)]
    done = runner.invoke(app, [*base, "--key", "not-a-key"], env=ENV)
    assert done.exit_code == 2 and done.stderr.startswith("--key: ")
    done = runner.invoke(app, [*base, "--key", generate_key(KEY_NAME)[1], "--json"], env=ENV)
    assert done.exit_code == 2 and json.loads(done.stderr)["error"] == "invalid_checkpoint"
    done = runner.invoke(
        app,
        ["verify-proof", "consistency", "--old", str(tmp_path / "gone"), "--key", VKEY],
        env=ENV,
    )
    assert done.exit_code == 2 and "--old" in done.stderr
    assert api.calls == []

    def refused(*args: Any, **kwargs: Any) -> dict[str, object]:
        raise ProofApiError("GET /api/v1/checkpoints/latest: 401: unauthorized")

    monkeypatch.setattr(main, "_proof_api", refused)
    done = runner.invoke(app, [*base, "--key", VKEY], env=ENV)
    assert done.exit_code == 2 and "401: unauthorized" in done.stderr


def test_key_from_the_environment(tmp_path: Path, api: FakeApi) -> None:
    kept = _note(tmp_path, api.log.checkpoint(7))
    env = {**ENV, "CHAINLOG_LOG_KEY": VKEY}
    done = runner.invoke(app, ["verify-proof", "consistency", "--old", str(kept)], env=env)
    assert done.exit_code == 0, done.output


def test_inclusion_by_id_and_by_file(tmp_path: Path, api: FakeApi) -> None:
    kept = _note(tmp_path, api.log.checkpoint(80))
    event = api.log.served(33)
    base = ["verify-proof", "inclusion", "--checkpoint", str(kept), "--key", VKEY]
    done = runner.invoke(app, [*base, "--event", event["id"]], env=ENV)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("INCLUDED: event seq 33 is in the signed tree of size 80\n")
    assert api.calls == [
        (f"/api/v1/events/{event['id']}", None),
        ("/api/v1/proofs/inclusion", {"event_id": event["id"], "tree_size": 80}),
    ]
    saved = tmp_path / "event.json"
    saved.write_text(json.dumps(event))
    done = runner.invoke(app, [*base, "--event", str(saved), "--json"], env=ENV)
    doc = json.loads(done.stdout)
    assert done.exit_code == 0 and doc["code"] == "included"
    assert doc["checkpoint"]["size"] == 80 and doc["checkpoint"]["origin"] == f"chainlog.local/{WS}"
    assert api.calls[-1][0] == "/api/v1/proofs/inclusion"


def test_inclusion_failures(tmp_path: Path, api: FakeApi) -> None:
    kept = _note(tmp_path, api.log.checkpoint(80))
    base = ["verify-proof", "inclusion", "--checkpoint", str(kept), "--key", VKEY, "--event"]
    event = api.log.served(33)
    api.events[event["id"]] = event | {"action": "document.view"}  # edited in the database
    done = runner.invoke(app, [*base, event["id"]], env=ENV)
    assert done.exit_code == 1 and done.stdout.startswith("FAILED (hash_mismatch): ")
    newer = api.log.served(81)
    done = runner.invoke(app, [*base, newer["id"]], env=ENV)
    assert done.exit_code == 2 and "newer than the checkpoint (size 80)" in done.stderr
    assert api.calls[-1][0].startswith("/api/v1/events/")
    done = runner.invoke(app, [*base, "no-such-event"], env=ENV)
    assert done.exit_code == 2 and "404" in done.stderr
    not_json = tmp_path / "event.json"
    not_json.write_text("[1, 2]")
    done = runner.invoke(app, [*base, str(not_json)], env=ENV)
    assert done.exit_code == 2 and "not an event" in done.stderr


def test_log_key(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    done = runner.invoke(app, ["log-key"], env=ENV)
    assert done.exit_code == 0 and done.stdout == VKEY + "\n"
    assert done.stderr == f"origin: chainlog.local/{WS}\n"
    done = runner.invoke(app, ["log-key", "--json"], env=ENV)
    assert json.loads(done.stdout)["verifier_key"] == VKEY

    def lying(*args: Any, **kwargs: Any) -> dict[str, object]:
        return {"verifier_key": VKEY, "public_key": base64.b64encode(b"\x01" * 32).decode()}

    monkeypatch.setattr(main, "_proof_api", lying)
    done = runner.invoke(app, ["log-key"], env=ENV)
    assert done.exit_code == 2 and "not its verifier key's" in done.stderr


def test_proof_api_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one function that talks to the API, over httpx's mock transport."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v1/checkpoints/latest":
            return httpx.Response(200, json={"size": 3})
        if request.url.path == "/api/v1/log-key":
            return httpx.Response(200, json=["not", "an", "object"])
        if request.url.path == "/down":
            raise httpx.ConnectError("connection refused")
        return httpx.Response(404, json={"error": "not_found"})

    real = httpx.Client
    monkeypatch.setattr(
        httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(handler), **kw)
    )
    doc = main._proof_api("http://api", "k1", "/api/v1/checkpoints/latest", {"first": 2})
    assert doc == {"size": 3}
    assert seen[0].headers["authorization"] == "Bearer k1" and seen[0].url.params["first"] == "2"
    for path, message in [
        ("/api/v1/log-key", "not a JSON object"),
        ("/api/v1/proofs/consistency", '404: {"error":"not_found"}'),
        ("/down", "connection refused"),
    ]:
        with pytest.raises(ProofApiError, match=message):
            main._proof_api("http://api", "k1", path)


def test_verify_with_checkpoints_checks_the_chain_and_extends_the_kept_one(
    tmp_path: Path, api: FakeApi
) -> None:
    kept = _note(tmp_path, api.log.checkpoint(60))
    r = runner.invoke(app, ["verify", "--checkpoints", str(kept), "--key", VKEY], env=ENV)
    assert r.exit_code == 0, r.output
    assert "VALID: 100 events checked" in r.output
    assert _paths(api) == [
        "/api/v1/verify",
        "/api/v1/checkpoints/latest",
        "/api/v1/proofs/consistency",
    ]
    assert kept.read_text().split("\n")[1] == "100"  # the newer one is kept now


def test_verify_with_checkpoints_fails_on_a_shrunk_log_even_when_the_chain_is_valid(
    tmp_path: Path, api: FakeApi
) -> None:
    kept = _note(tmp_path, api.log.checkpoint())
    before = kept.read_text()
    api.latest = api.log.checkpoint(60)  # the newest 40 events gone, chain still links
    r = runner.invoke(app, ["verify", "--checkpoints", str(kept), "--key", VKEY], env=ENV)
    assert r.exit_code == 1, r.output
    assert "VALID" in r.output and "smaller" in r.output
    assert kept.read_text() == before


def test_verify_checkpoints_needs_a_key(tmp_path: Path, api: FakeApi) -> None:
    kept = _note(tmp_path, api.log.checkpoint())
    r = runner.invoke(app, ["verify", "--checkpoints", str(kept)], env=ENV)
    assert r.exit_code == 2 and "--key" in r.output
