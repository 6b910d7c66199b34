"""``modelops-sandbox serve``: the embedded sandbox in the foreground, on loopback."""

from __future__ import annotations

import argparse
import shlex
import sys

from modelops_provider.sandbox.server import SandboxServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelops-sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the sandbox until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    serve.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        server = SandboxServer(args.host, args.port, log_level=args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    server.start()  # the URL is printed only once it answers
    print(f"modelops sandbox listening on {server.url}", flush=True)
    for name, value in server.connection_env().items():
        print(f"export {name}={shlex.quote(value)}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
