"""Git's long-running filter protocol (gitattributes(5), "Long Running Filter Process"): one process per git command."""

from __future__ import annotations

import io
from typing import BinaryIO, cast

from git_theta.errors import GitThetaError, report
from git_theta.git.pktline import (
    FLUSH,
    PacketReader,
    PacketWriter,
    ProtocolError,
    TruncatedPacket,
    read_text_list,
    widen_pipe,
    write_text_list,
)
from git_theta.session.context import Session

CAPABILITIES = ("clean", "smudge")


def serve(stdin: BinaryIO, stdout: BinaryIO, context: Session) -> None:
    """Answer git's clean and smudge requests until git closes our input."""
    for pipe in (stdin, stdout):  # 1 MiB ahead instead of 64 KiB: git and we wait on each other less often
        widen_pipe(pipe)
    try:
        _handshake(stdin, stdout)
    except EOFError:
        raise ProtocolError("git closed the connection during the filter handshake") from None
    while True:
        try:
            request = dict(item.split("=", 1) for item in read_text_list(stdin) if "=" in item)
        except TruncatedPacket:
            raise  # git went away inside a request: say so
        except EOFError:
            return
        content = PacketReader(stdin)
        command, path = request.get("command"), request.get("pathname", "")
        try:
            if command == "clean":
                _answer_clean(content, path, stdout, context)
            elif command == "smudge":
                _answer_smudge(content, path, stdout, context)
            else:
                raise ProtocolError(f"git asked for unsupported filter command {command!r}")
        except (EOFError, BrokenPipeError):  # git is gone (killed, say): nobody reads our answer any more
            raise ProtocolError(f"git closed the connection in the middle of {command} {path!r}") from None
        except Exception as exc:  # one bad file must not stop the whole git command
            report(about(path, exc))
            try:
                content.drain()
            except EOFError:
                raise ProtocolError(f"git closed the connection in the middle of {command} {path!r}") from None
            write_text_list(stdout, ["status=error"])


def _handshake(stdin: BinaryIO, stdout: BinaryIO) -> None:
    if read_text_list(stdin) != ["git-filter-client", "version=2"]:
        raise ProtocolError("git did not start the filter protocol version 2")
    write_text_list(stdout, ["git-filter-server", "version=2"])
    offered = {item.removeprefix("capability=") for item in read_text_list(stdin)}
    write_text_list(stdout, [f"capability={name}" for name in CAPABILITIES if name in offered])


# Each side's modules are imported on its first request: a git command cleans, or smudges, rarely both.


def _answer_clean(content: PacketReader, path: str, stdout: BinaryIO, context: Session) -> None:
    context.start_lookups()  # the git processes a clean asks first start while its modules load
    from git_theta.filters.clean import clean

    result = clean(io.BufferedReader(content, buffer_size=1 << 16), path, context)
    content.drain()
    write_text_list(stdout, ["status=success"])
    PacketWriter(stdout).write(result)
    stdout.write(FLUSH)
    write_text_list(stdout, [])


def _answer_smudge(content: PacketReader, path: str, stdout: BinaryIO, context: Session) -> None:
    from git_theta.filters.smudge import smudge

    writer = smudge(content.readall(), path, context)
    write_text_list(stdout, ["status=success"])
    try:
        writer(cast(BinaryIO, PacketWriter(stdout)))  # a raw binary stream: typing.BinaryIO is a class
    except BrokenPipeError:
        raise  # git is gone: there is no one to revoke success to
    except Exception as exc:  # the protocol lets us revoke success after partial content
        report(about(path, exc))
        stdout.write(FLUSH)
        write_text_list(stdout, ["status=error"])
        return
    stdout.write(FLUSH)
    write_text_list(stdout, [])


def about(path: str, exc: Exception) -> Exception:
    """Name the file in every error about it; for errors from the system (a full disk, a permission), say what to do."""
    if isinstance(exc, GitThetaError) and path and path not in str(exc):
        # Raised below the filters (a plugin checking stored format data, an unknown plugin), where the path is unknown.
        exc.args = (f"{path}: {exc}",)
        return exc
    if isinstance(exc, OSError) and not isinstance(exc, GitThetaError):
        error = GitThetaError(
            f"{path}: {exc.strerror or exc} ({exc.filename or 'writing'}); free some disk space or fix the "
            "permissions, then run the git command again"
        )
        error.__cause__ = exc
        return error
    return exc
