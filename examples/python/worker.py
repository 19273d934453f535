"""The shop's e-mail worker: ``REDKIT_URL=http://127.0.0.1:7070 python worker.py``.
SIGTERM or Ctrl-C stops it gracefully (running jobs finish, or go back to the queue)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Dict, List

import redkit

OUTBOX: List[Dict[str, str]] = []  # a stand-in for the SMTP server


async def send_email(to: str, subject: str) -> None:
    await asyncio.sleep(0.01)
    OUTBOX.append({"to": to, "subject": subject})


def make_worker(rk: redkit.AsyncClient) -> redkit.Worker:
    worker = redkit.Worker(rk, "emails", concurrency=4)

    @worker.task("welcome")
    async def welcome(job: redkit.Job) -> None:
        await send_email(job.args["to"], f"Welcome, {job.args['user']}!")

    @worker.task("receipt")
    async def receipt(job: redkit.Job) -> None:
        await send_email(job.args["user"], f"Order {job.args['order']}: {job.args['total']} EUR")

    return worker


async def main() -> None:
    async with redkit.AsyncClient(os.environ.get("REDKIT_URL", "http://127.0.0.1:7070")) as rk:
        worker = make_worker(rk)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.shutdown()))
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
