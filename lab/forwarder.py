"""The lab's forwarder of published client ports: plain TCP, one listener per port.

Runs in its own container, on the lab's internal network and on a network of its own
whose ports the engine publishes on the host (lab/publish.py). It only copies bytes: TLS
runs end to end between the desktop client and the server, so the client checks the
server's own certificate. Usage:
    forwarder.py SERVER:TLS:LISTEN_PORT:TARGET_ADDRESS:TARGET_PORT ...
e.g. ``prosody:starttls:13700:10.207.168.117:5222``.
"""

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # the other way may still have something to say
    except (ConnectionError, OSError):
        writer.close()


def handler(name: str, target: tuple[str, int]):
    async def forward(client_reader, client_writer):
        peer = client_writer.get_extra_info("peername")
        try:
            server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(*target), 10)
        except (OSError, asyncio.TimeoutError) as error:
            print(f"{name}: {peer[0]}:{peer[1]} -> {target[0]}:{target[1]}: cannot connect: {error}", flush=True)
            client_writer.close()
            return
        print(f"{name}: {peer[0]}:{peer[1]} -> {target[0]}:{target[1]}", flush=True)
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        server_writer.close()
        client_writer.close()
    return forward


async def main(specs: list[str], host: str = "0.0.0.0") -> None:
    servers = []
    for spec in specs:
        name, tls, listen, address, port = spec.split(":")
        servers.append(await asyncio.start_server(handler(f"{name} ({tls})", (address, int(port))),
                                                  host, int(listen)))
        print(f"{name} ({tls}): port {listen} -> {address}:{port}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
