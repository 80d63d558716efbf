"""python -m engine.dlgateway: serve the older deep-learning client through the engine."""
from __future__ import annotations

import argparse
import asyncio
import signal

from ..settings import flag, prog, setup_logging
from .server import Gateway, GatewaySettings

D = GatewaySettings()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog("engine.dlgateway"),
        description="Answer the older deep-learning client: a ZeroMQ DEALER whose routing id is its request "
                    "id sends one JSON frame {\"payload\": \"<base64 image file>\", \"_rid\": \"<id>\"} to "
                    "--bind and gets one JSON frame back with \"preds\": the top three predictions, "
                    "\"label : score, label : score, label : score\" (face by detection score, person, "
                    "background), from the learned models run on the engine's workers via the broker at "
                    "--connect. A bad request gets {\"error\": ..., \"code\": ...}.",
        epilog="Every flag can also be set by the environment variable named in its help. "
               "See docs/learned-ops.md.")
    flag(p, "--bind", env="ENGINE_DLGATEWAY_BIND", default=D.bind,
         help="ROUTER endpoint the older clients connect their DEALER to")
    flag(p, "--connect", env="ENGINE_DLGATEWAY_CONNECT", default=D.connect,
         help="the engine broker's client endpoint (its --front)")
    flag(p, "--max-in-flight", env="ENGINE_DLGATEWAY_MAX_IN_FLIGHT", default=D.max_in_flight, type=int,
         help="requests waiting on the engine at once; more are answered with a 'busy' error")
    flag(p, "--max-request-mb", env="ENGINE_DLGATEWAY_MAX_REQUEST_MB",
         default=D.max_request_bytes // 2**20, type=int,
         help="largest request frame in MiB (base64 makes the image 4/3 larger); larger ones get an "
              "error without being read, up to --max-frame-mb")
    flag(p, "--max-frame-mb", env="ENGINE_DLGATEWAY_MAX_FRAME_MB", default=0, type=int,
         help="frames over this many MiB drop the connection before the gateway reads them (ZeroMQ's "
              "MAXMSGSIZE; each connection also queues at most one frame): with --max-request-mb, what a "
              "flood can make the gateway hold. 0: one and a half times --max-request-mb (48 at its default)")
    flag(p, "--timeout-s", env="ENGINE_DLGATEWAY_TIMEOUT_S", default=D.timeout_s, type=float,
         help="seconds to wait for the engine per request before answering with an error")
    flag(p, "--log-level", env="ENGINE_LOG_LEVEL", default="info", help="debug, info, warning or error")
    args = p.parse_args(argv)
    if args.max_in_flight < 1 or args.max_request_mb < 1 or args.timeout_s <= 0:
        p.error("--max-in-flight and --max-request-mb must be at least 1, --timeout-s above 0")
    if args.max_frame_mb and args.max_frame_mb < args.max_request_mb:
        p.error(f"--max-frame-mb ({args.max_frame_mb}) must be 0 or at least --max-request-mb "
                f"({args.max_request_mb}): a frame the gateway would serve must get through")
    return args


async def _main(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Gateway(settings).serve(stop)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    settings = GatewaySettings(bind=args.bind, connect=args.connect, max_in_flight=args.max_in_flight,
                               max_request_bytes=args.max_request_mb * 2**20,
                               max_frame_bytes=args.max_frame_mb * 2**20, timeout_s=args.timeout_s)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
