"""A flood of sheddable requests for the lane test: closed loop, many connections, bounded in time.

    python flood_client.py URL KEY SECONDS CONNECTIONS [MODEL]
Prints one JSON line: {"sent": N, "statuses": {...}, "median_s": S}.
"""

import asyncio
import json
import sys
import time

import aiohttp

PAD = "x" * 2000  # a body worth parsing


async def main(url: str, key: str, seconds: float, connections: int, model: str = "chat") -> None:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PAD}], "max_tokens": 16}).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    sent = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def worker() -> None:
            nonlocal sent
            while time.monotonic() < stop:
                sent += 1
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        label = str(r.status)
                except (TimeoutError, aiohttp.ClientError):
                    label = "error"
                statuses[label] = statuses.get(label, 0) + 1
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    median_s = latencies[len(latencies) // 2] if latencies else 0.0
    print(json.dumps({"sent": sent, "statuses": statuses, "median_s": median_s}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6]))
