"""The long-running filter protocol, driven with in-memory streams that speak git's side of it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import safetensors.numpy

from git_theta.filters.process import serve
from git_theta.git.pktline import FLUSH, ProtocolError, read_packet, read_text_list
from git_theta.storage.objects import MemoryObjectStore
from tests.helpers import random_model
from tests.unit.support import clean_bytes, filter_context


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def text_list(items: list[str]) -> bytes:
    return b"".join(pkt(item.encode() + b"\n") for item in items) + FLUSH


HANDSHAKE = text_list(["git-filter-client", "version=2"]) + text_list(
    ["capability=clean", "capability=smudge", "capability=delay"]
)


def request(command: str, pathname: str, content: bytes, chunk: int = 65516) -> bytes:
    """One request as git sends it: keys, flush, content in packets, flush."""
    packets = b"".join(pkt(content[i : i + chunk]) for i in range(0, len(content), chunk))
    return text_list([f"command={command}", f"pathname={pathname}"]) + packets + FLUSH


def read_response(stream: io.BytesIO) -> tuple[list[str], bytes | None, list[str] | None]:
    """Git's reading of one answer: the status list, then (on success) the content and the final status list."""
    status = read_text_list(stream)
    if status != ["status=success"]:
        return status, None, None
    content = b""
    while (packet := read_packet(stream)) is not None:
        content += packet
    return status, content, read_text_list(stream)


def run(wire: bytes, store: MemoryObjectStore) -> io.BytesIO:
    out = io.BytesIO()
    with filter_context(store) as context:
        serve(io.BytesIO(wire), out, context)
    out.seek(0)
    assert read_text_list(out) == ["git-filter-server", "version=2"]
    assert read_text_list(out) == ["capability=clean", "capability=smudge"]  # never "delay": we do not offer it
    return out


def model_file() -> bytes:
    return safetensors.numpy.save(random_model(seed=1, width=150))  # ~180 KB: content spans several packets


def test_session_keeps_serving_after_errors(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryObjectStore()
    model = model_file()
    with filter_context() as reference:
        expected_metadata = clean_bytes(model, "model.safetensors", reference)
    npz = io.BytesIO()
    np.savez(npz, a=np.arange(10))

    wire = HANDSHAKE + request("clean", "model.safetensors", model, chunk=1000)
    wire += request("smudge", "model.safetensors", expected_metadata)
    wire += request("clean", "bad.safetensors", b"\x10" + bytes(7) + b"{ not json" + bytes(100))
    wire += request("clean", "arrays.npz", npz.getvalue())
    wire += request("frobnicate", "model.safetensors", b"whatever")
    wire += request("smudge", "README.md", b"not metadata: passed through\n")
    wire += request("clean", "empty.safetensors", b"")
    out = run(wire, store)

    status, content, final = read_response(out)
    assert (status, content, final) == (["status=success"], expected_metadata, [])
    status, content, final = read_response(out)
    assert (status, content == model, final) == (["status=success"], True, [])
    assert read_response(out) == (["status=error"], None, None)
    status, content, final = read_response(out)
    assert status == ["status=success"] and content.startswith(b'{\n  "git_theta_metadata": 1') and final == []
    assert read_response(out) == (["status=error"], None, None)
    assert read_response(out) == (["status=success"], b"not metadata: passed through\n", [])
    assert read_response(out) == (["status=success"], b"", [])
    assert out.read() == b""  # nothing more: serve returned when its input ended

    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 2, errors
    assert errors[0].startswith("git-theta: error: bad.safetensors")
    assert "frobnicate" in errors[1]


def test_smudge_with_missing_objects_answers_error_before_content() -> None:
    with filter_context() as other:
        metadata = clean_bytes(model_file(), "model.safetensors", other)
    out = run(HANDSHAKE + request("smudge", "model.safetensors", metadata), MemoryObjectStore())
    assert read_response(out) == (["status=error"], None, None)


def test_smudge_failing_midway_revokes_success_and_keeps_serving() -> None:
    store = MemoryObjectStore()
    model = model_file()
    with filter_context(store) as context:
        metadata = clean_bytes(model, "model.safetensors", context)
    for oid, data in store.objects.items():
        store.objects[oid] = data[:-1] + bytes([data[-1] ^ 1])  # every object corrupt
    wire = HANDSHAKE + request("smudge", "model.safetensors", metadata)
    wire += request("smudge", "notes.txt", b"plain text")
    out = run(wire, store)
    status, content, final = read_response(out)
    assert status == ["status=success"]
    assert model.startswith(content)  # at most the header went out before the first tensor failed
    assert final == ["status=error"]
    assert read_response(out) == (["status=success"], b"plain text", [])


def test_only_offered_capabilities_are_taken() -> None:
    wire = text_list(["git-filter-client", "version=2"]) + text_list(["capability=smudge"])
    out = io.BytesIO()
    with filter_context() as context:
        serve(io.BytesIO(wire), out, context)
    out.seek(0)
    assert read_text_list(out) == ["git-filter-server", "version=2"]
    assert read_text_list(out) == ["capability=smudge"]


@pytest.mark.parametrize(
    "greeting",
    [["git-filter-client", "version=1"], ["git-filter-client"], ["something-else", "version=2"]],
)
def test_bad_handshake(greeting: list[str]) -> None:
    with filter_context() as context, pytest.raises(ProtocolError):
        serve(io.BytesIO(text_list(greeting) + text_list(["capability=clean"])), io.BytesIO(), context)


@pytest.mark.parametrize("cut", [3, 2 + 4 + 100], ids=["inside-a-header", "inside-content"])
def test_git_going_away_inside_a_request_is_said_so(cut: int) -> None:
    # A killed git leaves a packet cut short: the filter says git closed the connection, not a protocol error.
    whole = request("clean", "model.safetensors", model_file())
    start = whole.index(FLUSH) + len(FLUSH)  # after the request's keys
    with pytest.raises(ProtocolError, match="git closed the connection in the middle of clean 'model.safetensors'"):
        run(HANDSHAKE + whole[: start + cut], MemoryObjectStore())


def test_git_going_away_inside_the_keys_of_a_request_is_an_error() -> None:
    keys = text_list(["command=clean", "pathname=model.safetensors"])
    with pytest.raises(ProtocolError, match="truncated pkt-line"):
        run(HANDSHAKE + keys[:10], MemoryObjectStore())
