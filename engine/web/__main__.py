"""python -m engine.web: run the web gateway in front of a broker."""
from __future__ import annotations

import argparse
from dataclasses import fields

from ..settings import add_flags, flag, from_args, prog, setup_logging
from . import serve
from .settings import DEFAULT_LISTEN, WebSettings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog("engine.web"),
        description="Serve the web pages (sign up, build a pipeline, drop images, history, live status) and "
                    "the HTTP API under /api/v1 (try it at /api/v1/docs; OpenAPI at /api/v1/openapi.json). "
                    "Images are processed by the broker at --broker; run it first, e.g. python -m engine.broker "
                    "--local-workers 2.",
        epilog="Every flag can also be set by the environment variable named in its help.")
    flag(p, "--listen", env="ENGINE_WEB_LISTEN", default=DEFAULT_LISTEN,
         help="host:port to serve HTTP on (keep 127.0.0.1 unless behind an HTTPS proxy)")
    add_flags(p, WebSettings)
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    return p.parse_args(argv)


def web_settings(args: argparse.Namespace) -> WebSettings:
    """The gateway's settings from its parsed flags (each field's flag is declared on the field)."""
    return from_args(WebSettings, args)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    settings = web_settings(args)
    serve(listen=args.listen, log_level=args.log_level, **{f.name: getattr(settings, f.name) for f in fields(settings)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
