"""A minimal HTTP/1.1 keep-alive server answering every request with one fixed 100-byte JSON
value, as fast as asyncio can: the floor under which no client transport can be measured
against ``redkit serve``. Used by latency.py's --fixed mode to compare transports alone.

python fixed_server.py PORT
"""

import asyncio
import sys

BODY = b'"' + b"x" * 100 + b'"'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class Fixed(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            self.buf = self.buf[length:]
            self.t.write(ANSWER)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Fixed, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
