"""`crunchctl logs`: a request's logs from the log endpoint (SPEC §8), merged or followed."""

from __future__ import annotations

from typing import BinaryIO

from ..client import ApiError, Client

MERGED = ("crunch-run.txt", "stderr.txt", "stdout.txt")


def print_logs(api: Client, request_uuid: str, file: str | None, follow: bool, out: BinaryIO) -> int:
    base = f"/container_requests/{request_uuid}/log"
    attempts = api.request("GET", base + "/")["items"]
    if not attempts:
        out.write(f"request {request_uuid} has no container yet\n".encode())
        return 0
    newest = max(attempts, key=lambda a: a["modified_at"] or "")["name"]
    if follow:
        _follow(api, f"{base}/{newest}/{file or 'stdout.txt'}", out)
        return 0
    names = [file] if file else [n for n in MERGED if n in {i["name"] for i in api.request("GET", f"{base}/{newest}/")["items"]}]
    lines: list[tuple[bytes, bytes]] = []
    for name in names:
        status, body, _ = api.request_raw("GET", f"{base}/{newest}/{name}")
        if status != 200:
            raise ApiError(status, [body[:200].decode(errors="replace")], "GET", name)
        label = b"" if file else name.removesuffix(".txt").encode() + b" "
        lines += [(line[:30], line[:31] + label + line[31:]) for line in body.splitlines(keepends=True)]
    for _, line in sorted(lines, key=lambda pair: pair[0]):  # stamps are fixed width: text order is time order
        out.write(line)
    out.flush()
    return 0


def _follow(api: Client, path: str, out: BinaryIO) -> None:
    response = api.stream(path, {"follow": "1"})
    try:
        while chunk := response.read1(65536):
            out.write(chunk)
            out.flush()
    finally:
        response.close()
