"""``make bench`` (``python -m bench``): the service against a bare aiohttp handler, over loopback, in one run.

What it measures: req/s and latency (p50, p99) of authenticated ``GET /api/me`` under wrk, plain and
while other work goes on — sign-ins (argon2) at a steady rate, another user sitting at the per-user
session cap, a second worker process — then how quickly a sign-out is honoured by every instance, and
whether a storm of clients whose access tokens all expired at once gets through the refresh hop.
All of it once on asyncio's event loop and once on uvloop, servers and bare handler alike.

How to read a ratio: the table's ``x ceiling`` is a row's req/s divided by the req/s of a bare aiohttp
handler (``bench/bare.py``) that answers the very bytes the service answers, loaded by the same wrk
with the same request, *in the same run*. 1.0 would mean the service costs nothing over aiohttp
itself; 0.7 means it serves 70 % of what aiohttp alone could on this machine at this moment. Absolute
req/s move with the machine and whatever else runs on it; the ratios are what compare across runs.

Modules, each used by the ones above it: ``__main__`` (arguments, the scenarios in order), ``report``
(the table, ``bench/results.json``), ``scenarios`` and ``storm`` (one function per scenario, each
returning a frozen result), ``client`` (aiohttp client calls), ``load`` (wrk and paced requests),
``processes`` (the processes measured, started and stopped by PID). Apart: ``memory`` (Redis bytes per
session) and ``metrics`` (the cost of recording a request's metrics).
"""


class BenchError(Exception):
    """Something that stops the run: a process that does not start, a sign-in that fails, wrk failing."""
