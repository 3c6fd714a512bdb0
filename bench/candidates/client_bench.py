"""HTTP client candidates for proxying: aiohttp.ClientSession vs httpx.AsyncClient vs seawall's own
lean HTTP/1.1 pool (``seawall.edges.upstreams.http1``, asyncio transports + httptools).

Run from the repo root inside the candidate venv:

    python bench/candidates/client_bench.py [--reps 3] [--duration 5] [--conns 32]

Topology (all on 127.0.0.1):

    wrk (CPU 1) --32 keep-alive conns--> proxy: raw ASGI app on uvicorn (CPU 0)
                                              --pooled client--> upstream: uvicorn (CPU 1)

The proxy reads the client's POST body, forwards it with the client library
under test over a keep-alive pool, reads the upstream answer and returns it.
Two scenarios:
  * "json":  upstream answers the ~400-byte JSON body from server_bench.py
  * "sse":   (extra) upstream answers a chunked text/event-stream of 16 small
             `data:` events + [DONE]; the proxy relays chunk by chunk as it
             reads them (what a gateway does with stream=true).
Each rep starts the proxy fresh (round-robin over clients); the upstream is
started once.  Prints markdown tables of medians, incl. proxy CPU % and RSS.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_bench as sb

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8001")
POOL = int(os.environ.get("BENCH_POOL", "64"))
JSON_HDRS = {"content-type": "application/json"}

SSE_EVENTS = [
    b'data: {"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1732670000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok%02d "},'
    b'"finish_reason":null}]}\n\n' % i
    for i in range(16)
] + [b"data: [DONE]\n\n"]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


# --------------------------------------------------------------------------
# Upstream app: /sse streams events, anything else is server_bench.app.
# --------------------------------------------------------------------------
async def upstream_app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/sse":
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for ev in SSE_EVENTS:
            await send({"type": "http.response.body", "body": ev, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await sb.app(scope, receive, send)


# --------------------------------------------------------------------------
# Proxy apps (raw ASGI). The client is built at lifespan startup.
# --------------------------------------------------------------------------
async def _lifespan(receive, send, setup, teardown):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await setup()
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await teardown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive) -> bytes:
    body, more = b"", True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    return body


def _ct(value: str | None) -> list:
    return [(b"content-type", (value or "application/octet-stream").encode())]


def make_aiohttp_proxy():
    import aiohttp

    st = {}

    async def setup():
        conn = aiohttp.TCPConnector(limit=POOL, limit_per_host=POOL, keepalive_timeout=60)
        st["s"] = aiohttp.ClientSession(
            base_url=UPSTREAM, connector=conn, timeout=aiohttp.ClientTimeout(total=30)
        )

    async def teardown():
        await st["s"].close()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, setup, teardown)
        body = await _read_body(receive)
        path = scope["path"]
        async with st["s"].post(path, data=body, headers=JSON_HDRS) as r:
            await send({"type": "http.response.start", "status": r.status,
                        "headers": _ct(r.headers.get("content-type"))})
            if path == "/sse":
                async for chunk in r.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send({"type": "http.response.body", "body": await r.read()})

    return app


def make_httpx_proxy():
    import httpx

    st = {}

    async def setup():
        st["c"] = httpx.AsyncClient(
            base_url=UPSTREAM,
            limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL,
                                keepalive_expiry=60),
            timeout=httpx.Timeout(30.0),
        )

    async def teardown():
        await st["c"].aclose()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, setup, teardown)
        body = await _read_body(receive)
        path = scope["path"]
        if path == "/sse":
            req = st["c"].build_request("POST", path, content=body, headers=JSON_HDRS)
            r = await st["c"].send(req, stream=True)
            try:
                await send({"type": "http.response.start", "status": r.status_code,
                            "headers": _ct(r.headers.get("content-type"))})
                async for chunk in r.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await r.aclose()
        else:
            r = await st["c"].post(path, content=body, headers=JSON_HDRS)
            await send({"type": "http.response.start", "status": r.status_code,
                        "headers": _ct(r.headers.get("content-type"))})
            await send({"type": "http.response.body", "body": r.content})

    return app


def make_seawall_proxy():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
    from seawall.edges.upstreams.http1 import HttpClient

    st = {}

    async def setup():
        st["c"] = HttpClient(UPSTREAM, max_connections=POOL, keepalive_s=60)

    async def teardown():
        await st["c"].close()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, setup, teardown)
        body = await _read_body(receive)
        path = scope["path"]
        stream = path == "/sse"
        r = await st["c"].post(UPSTREAM + path, body, JSON_HDRS, connect_s=5, read_s=30, total_s=30, stream=stream)
        try:
            await send({"type": "http.response.start", "status": r.status,
                        "headers": _ct(r.headers.get("content-type"))})
            if stream:
                async for chunk in r.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send({"type": "http.response.body", "body": await r.read()})
            r.release()
        finally:
            r.close()

    return app


# Import targets for uvicorn (built lazily so importing this module is cheap).
def __getattr__(name):
    if name == "proxy_aiohttp":
        return make_aiohttp_proxy()
    if name == "proxy_httpx":
        return make_httpx_proxy()
    if name == "proxy_seawall":
        return make_seawall_proxy()
    raise AttributeError(name)


CLIENTS = {"aiohttp": "client_bench:proxy_aiohttp", "httpx": "client_bench:proxy_httpx",
           "seawall": "client_bench:proxy_seawall"}
SCENARIOS = {"json": "/v1/chat/completions", "sse": "/sse"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--clients", default="aiohttp,httpx")
    ap.add_argument("--scenarios", default="json,sse")
    a = ap.parse_args()
    clients = a.clients.split(",")
    scenarios = a.scenarios.split(",")

    up_port = sb.free_port()
    upstream = f"http://{sb.HOST}:{up_port}"
    up = sb.start(sb.server_cmd("uvicorn", up_port, "client_bench:upstream_app"), cpu=1)
    print(f"# client_bench: {a.reps} reps x {a.duration:g}s, {a.conns} conns, pool {POOL}; "
          f"proxy = raw ASGI on uvicorn (CPU 0); upstream = uvicorn (CPU 1); wrk -t1 (CPU 1)")
    results: dict[tuple, list[dict]] = {}
    try:
        sb.wait_ready(up_port, up)
        for rep in range(a.reps):
            for client in clients:
                port = sb.free_port()
                env = {"BENCH_UPSTREAM": upstream, "BENCH_POOL": str(POOL)}
                proxy = sb.start(sb.server_cmd("uvicorn", port, CLIENTS[client]), cpu=0, env=env)
                try:
                    sb.wait_ready(port, proxy)
                    for sc in scenarios:
                        sb.drive(port, a.warmup, a.conns, path=SCENARIOS[sc])
                        r = sb.measured(lambda port=port, proxy=proxy, sc=sc: sb.drive(
                            port, a.duration, a.conns, watch=[proxy.pid, up.pid],
                            path=SCENARIOS[sc]))
                        results.setdefault((sc, client), []).append(r)
                        print(f"  rep {rep + 1} {sc:4s} {client:8s} {r['rps']:8.0f} req/s  "
                              f"p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                              f"proxy cpu {r['cpu'][0]:5.1f}% rss {r['rss'][0]:5.1f} MiB  "
                              f"upstream cpu {r['cpu'][1]:5.1f}%  errors {r['errors']}  "
                              f"bg {r['bg']:4.0f}%",
                              flush=True)
                finally:
                    sb.stop(proxy)
    finally:
        sb.stop(up)

    for sc in scenarios:
        print()
        print(f"### scenario: {sc} ({SCENARIOS[sc]})")
        print("| client | req/s (median) | p50 ms | p99 ms | proxy CPU % | proxy RSS MiB "
              "| upstream CPU % | errors | max bg CPU % |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for client in clients:
            rows = results[(sc, client)]
            print(f"| {client} | {sb.med(rows, 'rps'):.0f} | {sb.med(rows, 'p50'):.2f} "
                  f"| {sb.med(rows, 'p99'):.2f} | {sb.med(rows, 'cpu', 0):.0f} "
                  f"| {sb.med(rows, 'rss', 0):.1f} | {sb.med(rows, 'cpu', 1):.0f} "
                  f"| {sum(r['errors'] for r in rows)} | {max(r['bg'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
