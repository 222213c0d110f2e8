"""``sugar-xero local``: the whole stack in one process, on 127.0.0.1 only.

Every server is a thread of this process (moto, the Xero emulator, the Sugar double, the gateway),
and so are the queue pollers and the schedule timer; stopping the process stops all of them, so
nothing is orphaned and no port stays bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from sugar_xero.local.aws_resources import DEFAULT_REGION, LocalAws, create_resources, handler_environment
from sugar_xero.local.gateway import GatewayServer, RouteTable
from sugar_xero.local.poller import QueuePoller
from sugar_xero.local.runtime import LocalRuntime
from sugar_xero.local.samples import fixtures_dir, sample_seed
from sugar_xero.local.state_file import STATE_FILE_NAME, read_state_file
from sugar_xero.local.template import LOCAL_ACCOUNT_ID, StackTemplate, TemplateError
from sugar_xero.local.timer import ScheduleTimer

LOG = logging.getLogger("sugar_xero.local")

LOOPBACK = "127.0.0.1"
# Where the connector sends its calls: the shell's value wins (contract), else the local servers.
USER_OVERRIDABLE = ("XERO_API_BASE_URL", "XERO_IDENTITY_URL", "SUGAR_BASE_URL")
# Unset for the handlers: a local run takes secrets from the environment, and a profile would
# point boto3 at real AWS credentials instead of the fake ones moto takes.
LOCAL_ONLY_UNSET = ("SECRETS_ARN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


class StackError(Exception):
    """The stack cannot start (a port taken, a template problem, another stack running)."""


@dataclass
class StackOptions:
    port: int = 3000
    xero_port: int = 5001
    sugar_port: int = 5002
    template: Path | None = None
    state_file: Path | None = None
    reconcile_every: float | None = None  # seconds; None: the template's schedule
    region: str = DEFAULT_REGION
    verbose: bool = False
    demo: bool = False  # run `sugar-xero demo` against the stack once it is ready (make run)
    log_file: Path | None = None  # the functions' JSON logs, metric lines and warnings; None: stdout


@dataclass
class LocalStack:
    options: StackOptions
    template: StackTemplate | None = None
    aws: LocalAws | None = None
    runtime: LocalRuntime | None = None
    gateway: GatewayServer | None = None
    state_file: Path | None = None
    urls: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    _stoppers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    pollers: list[QueuePoller] = field(default_factory=list)
    timers: list[ScheduleTimer] = field(default_factory=list)
    _user_environment: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _sugar_double: Any = None  # the Sugar double's app, in this process

    # ---- start -----------------------------------------------------------------------------
    def start(self, out: TextIO = sys.stdout) -> None:
        try:
            self._start(out)
        except BaseException:
            self.stop()
            raise

    def _start(self, out: TextIO) -> None:
        from sugar_xero.local.template import default_template_path

        template_path = self.options.template or default_template_path()
        if not template_path.exists():
            raise StackError(f"no template at {template_path}")
        try:
            self.template = StackTemplate(template_path)
            functions = self.template.functions()
        except TemplateError as error:
            raise StackError(str(error)) from error
        self.state_file = self.options.state_file or self.template.project_dir / STATE_FILE_NAME
        refuse_if_running(self.state_file)

        # The servers on requested ports first: a taken port fails before anything slow starts.
        self._start_xero_emulator()
        self._start_sugar_double()
        self.gateway = self._bind(
            "gateway",
            lambda: GatewayServer(
                RouteTable(self.template.api_routes()), self._invoke, host=LOOPBACK, port=self.options.port
            ),
            self.options.port,
        )
        self.urls["gateway"] = self.gateway.url
        self._stoppers.append(("gateway", self.gateway.shutdown))
        # Pointers at real AWS would defeat the fake credentials and the moto endpoint.
        for name in LOCAL_ONLY_UNSET:
            os.environ.pop(name, None)
        self._start_moto()
        try:
            self.aws = create_resources(
                self.template, self.urls["moto"], region=self.options.region, environ=dict(os.environ)
            )
        except TemplateError as error:
            raise StackError(str(error)) from error

        self.environment = self._apply_environment()
        self._install_crm_package()
        self._declare_organisations()
        self.runtime = LocalRuntime(functions, self.options.region, log=self._open_log())
        self.runtime.load_all()  # imported only now, so that they read the environment above
        from shared import wiring

        wiring.reset()
        self.gateway.start()
        self._start_pollers()
        self._start_timers()

        for label, key in (
            ("API (gateway)", "gateway"),
            ("Xero emulator", "xero"),
            ("Sugar double", "sugar"),
            ("AWS (moto)", "moto"),
        ):
            print(f"{label:<15} {self.urls[key]}", file=out)
        for name in USER_OVERRIDABLE:
            if self._user_environment.get(name):
                print(f"{name} from your environment: {self.environment[name]}", file=out)
        self._wait_until_healthy()
        self._write_state_file()
        print(f"state file      {self.state_file}", file=out)
        if self.options.log_file:
            print(f"function logs   {self.options.log_file} (JSON lines, as CloudWatch Logs would hold them)", file=out)
        print("ready", file=out, flush=True)

    def _open_log(self) -> Any:
        """The functions' log; what they print (Powertools' metric lines) goes there too. The
        stack's own lines are written to the ``out`` it was given, so they stay on the terminal."""
        if self.options.log_file is None:
            return None
        self.options.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.options.log_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed at stop
        terminal, sys.stdout = sys.stdout, log

        def close() -> None:
            sys.stdout = terminal
            log.close()

        self._stoppers.append(("log file", close))
        return log

    def _bind(self, what: str, make: Callable[[], Any], port: int) -> Any:
        try:
            return make()
        except OSError as error:
            raise StackError(
                f"cannot listen on {LOOPBACK}:{port} for the {what}: {error.strerror or error}. "
                f"Choose another port (0 picks a free one)."
            ) from error

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from sugar_xero.local.atomic_sqs import make_receive_atomic

        make_receive_atomic()  # one consumer per received message, as SQS (atomic_sqs.py)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self.urls["moto"] = f"http://{host}:{port}"

        def stop() -> None:
            server.stop()
            inner = getattr(server, "_server", None)
            if inner is not None:
                inner.server_close()

        self._stoppers.append(("moto", stop))

    def _start_xero_emulator(self) -> None:
        from sugar_xero.local import xero_emulator

        server = self._bind(
            "Xero emulator",
            lambda: xero_emulator.serve(LOOPBACK, self.options.xero_port),
            self.options.xero_port,
        )
        self.urls["xero"] = server.url.rstrip("/")
        self._xero_emulator = server.app
        self._stoppers.append(("xero emulator", server.shutdown))

    def _declare_organisations(self) -> None:
        """The organisations the mapping configuration names exist in the emulated Xero, and its
        user may access them all (as a group's finance login does): `/connections` lists each,
        so `sugar-xero connect` onboards them in one consent, as with Xero."""
        from shared.mapping.settings import load_mapping_file

        organisations = load_mapping_file().organisations
        if organisations is None:
            return
        default = self._xero_emulator.config.tenant_id
        self._xero_emulator.config.organisations.update(
            {tenant_id: f"{name} (emulated organisation)" for name, tenant_id in organisations.names.items()
             if tenant_id != default})

    def _start_sugar_double(self) -> None:
        from sugar_xero.local import sugar_double

        fixtures = fixtures_dir(self.template.project_dir if self.template else None)
        seed = sugar_double.fixture_seed(fixtures) if (fixtures / "sugar").is_dir() else sample_seed()
        server = self._bind(
            "Sugar double",
            lambda: sugar_double.serve(LOOPBACK, self.options.sugar_port, seed=seed),
            self.options.sugar_port,
        )
        self.urls["sugar"] = server.url
        self._sugar_double = server.app
        self._stoppers.append(("sugar double", server.shutdown))

    def _install_crm_package(self) -> None:
        """What an administrator does once on a real CRM: the package's fields and Web Logic Hooks
        (`sugar-xero sugar-package`, Module Loader), here put straight into the Sugar double so the
        local stack's CRM passes `sugar-xero sugar-check`."""
        from shared.billing.rules import load_rules_file
        from shared.mapping.settings import load_mapping_file
        from shared.secrets import get_secret
        from shared.sugar.invoice_module import installed_vardefs
        from shared.sugar.schema import as_vardefs, required_fields
        from shared.usecases.sugar_check import expected_hooks

        fields = required_fields(load_mapping_file(), load_rules_file())
        self._sugar_double.install_fields(as_vardefs(fields))
        self._sugar_double.install_fields(installed_vardefs())  # the package's Xero Invoices module
        hooks = expected_hooks(self.urls["gateway"], get_secret("CRM_TOKEN"))
        self._sugar_double.seed({"records": {"WebLogicHooks": [
            {"id": f"xero-hook-{hook.module}-{hook.event}", "name": hook.name, "webhook_target_module": hook.module,
             "trigger_event": hook.event, "request_method": "POST", "url": url} for hook, url in hooks]}})

    def _apply_environment(self) -> dict[str, str]:
        """Set the handlers' environment in this process (the handlers read ``os.environ``)."""
        assert self.template is not None and self.aws is not None
        env = handler_environment(self.template, self.aws)
        applied: dict[str, str] = {}
        for name, value in env.template_values.items():
            if name not in USER_OVERRIDABLE and name not in os.environ:
                applied[name] = value
        local_urls = {
            "XERO_API_BASE_URL": self.urls["xero"],
            "XERO_IDENTITY_URL": self.urls["xero"] + "/connect/token",
            # Xero's sign-in, emulated: `sugar-xero connect`'s link is granted at once
            "XERO_AUTHORIZE_URL": self.urls["xero"] + "/identity/connect/authorize",
            "SUGAR_BASE_URL": self.urls["sugar"],
        }
        for name, value in local_urls.items():
            applied[name] = os.environ.get(name) or value
        for name, value in {
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "SugarXero",
            "POWERTOOLS_SERVICE_NAME": "sugar-xero",
            # Metric lines (EMF) mean something to CloudWatch only; locally they bury the output.
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            applied[name] = os.environ.get(name) or applied.get(name) or value
        applied.update(env.resources)
        applied["PUBLIC_BASE_URL"] = self.urls["gateway"]
        if self.options.demo and not os.environ.get("MAPPING_CONFIG"):
            # The demo routes one quote to each of two organisations (sugar_xero/local/demo_mapping.yaml).
            applied["MAPPING_CONFIG"] = str(Path(__file__).with_name("demo_mapping.yaml"))
        for name in LOCAL_ONLY_UNSET:
            os.environ.pop(name, None)
        os.environ.update(applied)
        return applied

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        assert self.runtime is not None
        return self.runtime.invoke(function, event)

    def _lane_invoker(self, lane: str) -> Callable[[str, dict[str, Any]], Any]:
        def invoke(function: str, event: dict[str, Any]) -> Any:
            assert self.runtime is not None
            return self.runtime.invoke(function, event, lane=lane)

        return invoke

    def _start_pollers(self) -> None:
        import boto3

        assert self.template is not None and self.aws is not None
        sqs = boto3.session.Session().client(
            "sqs", endpoint_url=self.aws.endpoint_url, region_name=self.aws.region
        )
        for subscription in self.template.queue_subscriptions():
            if not subscription.enabled or subscription.queue not in self.aws.queues:
                continue
            queue = self.aws.queues[subscription.queue]
            # As many pollers as the mapping's MaximumConcurrency, each gathering its own batch and
            # invoking its own local container of the function (a lane), as Lambda runs one
            # concurrent invocation per execution environment.
            for index in range(subscription.maximum_concurrency):
                poller = QueuePoller(
                    subscription,
                    sqs=sqs,
                    queue_url=queue["url"],
                    queue_arn=queue["arn"],
                    region=self.aws.region,
                    invoke=self._lane_invoker(f"{subscription.queue}-{index}"),
                )
                poller.thread_name = f"poller-{subscription.queue}-{index}"
                poller.start()
                self.pollers.append(poller)

        def stop() -> None:
            for poller in self.pollers:
                poller.stop()
            for poller in self.pollers:
                poller.join()

        self._stoppers.append(("pollers", stop))

    def _start_timers(self) -> None:
        assert self.template is not None
        for schedule in self.template.schedules():
            every = self.options.reconcile_every or schedule.every_seconds
            if not every:
                LOG.warning(
                    "schedule %s (%s) is not a rate(); it does not run locally",
                    schedule.name,
                    schedule.expression,
                )
                continue
            arn = (
                f"arn:aws:scheduler:{self.options.region}:{LOCAL_ACCOUNT_ID}:schedule/default/{schedule.name}"
            )
            timer = ScheduleTimer(
                schedule.function,
                every,
                schedule_arn=arn,
                region=self.options.region,
                invoke=self._invoke,
                event_input=schedule.input,
            )
            timer.start()
            self.timers.append(timer)

        def stop() -> None:
            for timer in self.timers:
                timer.stop()
            for timer in self.timers:
                timer.join()

        self._stoppers.append(("timers", stop))

    def _wait_until_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | str = "no answer"
        while time.monotonic() < deadline:
            try:
                answer = requests.get(self.urls["gateway"] + "/health", timeout=5)
                if answer.status_code == 200:
                    return
                last = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except requests.RequestException as error:
                last = error
            time.sleep(0.1)
        raise StackError(f"GET /health through the gateway did not answer 200 in {timeout:.0f} s: {last}")

    def _write_state_file(self) -> None:
        assert self.state_file is not None and self.aws is not None
        state = {
            "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "template": str(self.template.path if self.template else ""),
            "urls": dict(self.urls),
            "ports": {k: int(v.rsplit(":", 1)[1]) for k, v in self.urls.items()},
            "region": self.aws.region,
            "queues": self.aws.queues,
            "tables": self.aws.tables,
            "secrets": self.aws.secrets,
            "log_file": str(self.options.log_file) if self.options.log_file else None,
            "environment": {
                k: v
                for k, v in self.environment.items()
                if not k.startswith("AWS_SECRET") and k != "AWS_SESSION_TOKEN"
            },
        }
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.state_file)
        self._stoppers.append(("state file", self._remove_state_file))

    def _remove_state_file(self) -> None:
        if self.state_file is None:
            return
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        if state.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.state_file.unlink()

    # ---- stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything started: first what takes in work (gateway, pollers, timers), then the
        servers the work talks to, newest first."""
        intake = ("state file", "timers", "pollers", "gateway")
        ordered = sorted(reversed(self._stoppers), key=lambda s: intake.index(s[0]) if s[0] in intake else 99)
        self._stoppers.clear()
        for name, stop in ordered:
            try:
                stop()
            except Exception:
                LOG.exception("stopping %s", name)


def refuse_if_running(path: Path) -> None:
    state = read_state_file(path)
    if state and state.get("pid") != os.getpid():
        raise StackError(
            f"a local stack is already running (pid {state['pid']}, {state['urls'].get('gateway')}); "
            f"stop it first, or pass --state-file for a second one"
        )


def run(options: StackOptions, out: TextIO = sys.stdout) -> int:
    """Start the stack, wait for SIGINT or SIGTERM, stop it. The exit status of ``sugar-xero local``."""
    logging.basicConfig(
        level=logging.INFO if options.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not options.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop_requested = threading.Event()
    received: list[int] = []

    def on_signal(number: int, _frame: Any) -> None:
        received.append(number)
        stop_requested.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stack = LocalStack(options)
    try:
        try:
            stack.start(out)
        except StackError as error:
            print(f"sugar-xero local: {error}", file=sys.stderr)
            return 1
        if options.demo:
            from sugar_xero.local.demo import run_demo

            run_demo(state_file=stack.state_file, out=out)
            print("the stack keeps running; Ctrl-C stops it", file=out, flush=True)
        while not stop_requested.wait(0.5):
            pass
        print("stopping", file=out, flush=True)
        return 0
    finally:
        watchdog = threading.Timer(15.0, lambda: os._exit(1))  # a stuck thread must not keep ports bound
        watchdog.daemon = True
        watchdog.start()
        stack.stop()
        watchdog.cancel()
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received or stop_requested.is_set():
            print("stopped", file=out, flush=True)
