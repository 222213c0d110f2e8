"""A second warm container of the connector's API functions, for benchmarks that need a backlog.

`python -m bench.intake STATE_FILE POSTS_JSON` invokes the same handlers the local gateway would,
with the same API Gateway events (sugar_xero.local.gateway.build_event), against the running
stack's AWS (its state file gives the environment), one request at a time as one Lambda container
does. Locally every function is one container that serves API events and queue batches in turn;
in AWS the API answers from containers of its own, so a benchmark that queues thousands of
documents runs a few of these beside the stack rather than waiting behind the workers.
Prints how many requests were accepted (2xx) and exits non-zero if any was not.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state = json.loads(Path(argv[0]).read_text())
    posts = json.loads(Path(argv[1]).read_text())
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       **state["environment"]})
    from sugar_xero.local.gateway import RouteTable, build_event, response_parts
    from sugar_xero.local.runtime import LocalRuntime
    from sugar_xero.local.template import StackTemplate

    template = StackTemplate(state["template"])
    routes = RouteTable(template.api_routes())
    runtime = LocalRuntime(template.functions(), state["region"])
    refused = 0
    for route, token, body in posts:
        raw = json.dumps(body).encode()
        match = routes.match("POST", route)
        assert match is not None, route
        event = build_event(method="POST", raw_path=f"{route}?token={token}",
                            header_pairs=[("Content-Type", "application/json"), ("User-Agent", "SugarCrm")],
                            body=raw, match=match)
        status, _, answer = response_parts(runtime.invoke(match.route.function, event))
        if not 200 <= status < 300:
            refused += 1
            print(f"{route}: {status} {answer[:200]!r}", file=sys.stderr)
    print(f"accepted {len(posts) - refused} of {len(posts)}")
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
