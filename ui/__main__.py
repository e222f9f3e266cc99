"""`python -m ui --api-url http://127.0.0.1:3000`: the clinician app alone, against a running service."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui", description=__doc__)
    parser.add_argument("--api-url", default=None,
                        help="base URL of the BalancedBio service (default: $BALANCEDBIO_API_URL)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    args = parser.parse_args(argv)
    import os

    if not (args.api_url or os.environ.get("BALANCEDBIO_API_URL")):
        parser.error("give --api-url or set BALANCEDBIO_API_URL (the UI is a client of the service)")

    from starlette.middleware import Middleware

    from ui.app import build_ui
    from ui.sessions import UiSessionGate, UiSessions

    # The same session gate as in the service (ui/sessions.py), here in front of the app at "/".
    sessions = UiSessions()
    build_ui(args.api_url, sessions).launch(
        server_name=args.host, server_port=args.port, show_error=True,
        app_kwargs={"middleware": [Middleware(UiSessionGate, sessions=sessions, prefix="")]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
