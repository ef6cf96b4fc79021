"""Baseline for bench/web_forms.py: the smallest Litestar app, served exactly like `dangan serve`.

One GET returning a short text. uvicorn gets the same settings as web/cli.py `cmd_serve`
(one worker, log_level="warning", access_log=False, default loop/http implementation), so the ratio
dangan/baseline measures the application, not the server stack.

    .venv/bin/python bench/minimal_app.py --port 8001
"""
from __future__ import annotations

import argparse

from litestar import Litestar, MediaType, get


@get("/", media_type=MediaType.TEXT)
async def hello() -> str:  # async like Dangan's handlers
    return "ok"


app = Litestar(route_handlers=[hello], debug=False)


def main() -> None:
    import uvicorn  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # Same as web/cli.py cmd_serve.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", workers=1, access_log=False)


if __name__ == "__main__":
    main()
