"""The socket the embedded service and the test service hand to uvicorn."""

from __future__ import annotations

import asyncio
import socket

from cwl_crunch.cli.serving import loopback_socket


async def _accepted_nodelay(listening: socket.socket) -> int:
    """TCP_NODELAY on the server side of one connection accepted by asyncio from `listening`."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname())
        value = await asyncio.wait_for(accepted, 5)
        writer.close()
    return value


def test_loopback_socket_is_bound_to_loopback() -> None:
    sock = loopback_socket()
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
    finally:
        sock.close()


def test_connections_accepted_from_it_have_nagle_off() -> None:
    # With Nagle on, every keep-alive response after the first waited ~40 ms for a delayed ACK.
    assert asyncio.run(_accepted_nodelay(loopback_socket())) != 0


def test_a_socket_made_without_the_protocol_would_keep_nagle_on() -> None:
    # Why loopback_socket() names IPPROTO_TCP: asyncio only sets TCP_NODELAY when sock.proto says TCP.
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    assert asyncio.run(_accepted_nodelay(plain)) == 0
