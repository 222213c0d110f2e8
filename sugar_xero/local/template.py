"""Reading ``infra/template.yaml`` for the local stack: CloudFormation short tags, intrinsic
functions, and the functions with their API routes, queue subscriptions and schedules.

The local stack builds everything from the template itself, so a route, queue or table added
there shows up locally without a second list to keep in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCAL_STACK_NAME = "sugar-xero-local"
LOCAL_ACCOUNT_ID = "123456789012"


class TemplateError(Exception):
    """The template cannot be read, or a value in it cannot be worked out locally."""


class Unresolved(TemplateError):
    """An intrinsic refers to something the local stack does not create."""


# ---- YAML with CloudFormation short tags ------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns ``!Ref x`` into ``{"Ref": x}``, ``!Sub s`` into ``{"Fn::Sub": s}``..."""


def _long_form(tag: str) -> str:
    return "Ref" if tag == "Ref" else ("Condition" if tag == "Condition" else f"Fn::{tag}")


def _construct_tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = _long_form(suffix)
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if key == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
# CloudFormation keeps dates such as AWSTemplateFormatVersion as strings.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_template(path: str | Path) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as error:
        raise TemplateError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return document


# ---- intrinsic functions -----------------------------------------------------------------------

_NO_VALUE = object()  # AWS::NoValue: the property is dropped
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Works out intrinsic functions with what the local stack knows.

    ``refs`` maps a logical id to what ``!Ref`` gives (queue URL, table name, secret ARN) and
    ``attributes`` maps ``(logical id, attribute)`` to what ``!GetAtt`` gives; both grow while
    resources are created.
    """

    def __init__(
        self,
        template: dict[str, Any],
        *,
        region: str,
        stack_name: str = LOCAL_STACK_NAME,
        account_id: str = LOCAL_ACCOUNT_ID,
        parameters: dict[str, str] | None = None,
    ):
        self.template = template
        self.region = region
        self.stack_name = stack_name
        self.account_id = account_id
        self.parameters: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if parameters and name in parameters:
                self.parameters[name] = parameters[name]
            elif isinstance(spec, dict) and "Default" in spec:
                self.parameters[name] = spec["Default"]
        self.refs: dict[str, Any] = {}
        self.attributes: dict[tuple[str, str], Any] = {}
        self.resource_lookups = 0  # how many !Ref/!GetAtt were answered by a created resource
        self._conditions: dict[str, bool] = {}

    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::NotificationARNs": [],
        }
        if name not in values:
            raise Unresolved(f"unknown pseudo parameter {name}")
        return values[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            self.resource_lookups += 1
            return self.refs[name]
        raise Unresolved(f"!Ref {name}: not created by the local stack")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if (logical_id, attribute) in self.attributes:
            self.resource_lookups += 1
            return self.attributes[(logical_id, attribute)]
        raise Unresolved(f"!GetAtt {logical_id}.{attribute}: not created by the local stack")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.get("Conditions") or {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)

    def resolve(self, value: Any) -> Any:  # noqa: C901 - one branch per intrinsic
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                parts = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(str(parts[0]), str(self.resolve(parts[1])))
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    return self._sub(argument[0], argument[1] if len(argument) > 1 else {})
                return self._sub(argument, {})
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in argument)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Join":
                separator, items = argument
                return str(separator).join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::FindInMap":
                mapping, top, second = (self.resolve(a) for a in argument[:3])
                try:
                    return self.template["Mappings"][mapping][top][second]
                except KeyError as error:
                    raise Unresolved(f"!FindInMap {mapping}.{top}.{second} not found") from error
            if key == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(argument)).encode()).decode()
            if key == "Fn::GetAZs":
                return [f"{self.region}{zone}" for zone in "abc"]
            if key.startswith("Fn::"):
                raise Unresolved(f"{key} is not supported by the local stack")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}


# ---- what the local stack needs to know about each function -------------------------------------


@dataclass(frozen=True)
class ApiRoute:
    function: str
    path: str  # as declared, e.g. /jobs/{job_id}
    method: str  # upper case, or ANY


@dataclass(frozen=True)
class QueueSubscription:
    function: str
    queue: str  # logical id of the queue
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool
    enabled: bool = True
    # ScalingConfig.MaximumConcurrency: concurrent invocations the mapping may make (Lambda's
    # default, without it, is as many as the account allows; locally 1)
    maximum_concurrency: int = 1


@dataclass(frozen=True)
class Schedule:
    function: str
    name: str
    expression: str
    every_seconds: float | None  # for rate(...) expressions
    input: Any = None


@dataclass
class FunctionSpec:
    logical_id: str
    module: str  # importable module path, e.g. functions.contact_sync.app
    attribute: str  # e.g. lambda_handler
    function_name: str
    memory_mb: int
    timeout_seconds: int
    environment: dict[str, Any] = field(default_factory=dict)  # unresolved values


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days|second|seconds)\s*\)$")


def rate_seconds(expression: str) -> float | None:
    match = _RATE.match(expression.strip())
    if not match:
        return None
    unit = match.group(2).rstrip("s")
    return int(match.group(1)) * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]


def _merged_function_properties(template: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    defaults = (template.get("Globals") or {}).get("Function") or {}
    merged = {**defaults, **properties}
    default_vars = (defaults.get("Environment") or {}).get("Variables") or {}
    own_vars = (properties.get("Environment") or {}).get("Variables") or {}
    merged["Environment"] = {"Variables": {**default_vars, **own_vars}}
    return merged


def _handler_module(
    code_uri: Any, handler: str, template_dir: Path, project_dir: Path, logical_id: str
) -> tuple[str, str]:
    """``CodeUri`` + ``Handler`` → an importable module path and the handler's name."""
    if not isinstance(code_uri, str) or not handler or "." not in handler:
        raise TemplateError(
            f"{logical_id}: needs a local CodeUri folder and a Handler such as app.lambda_handler"
        )
    module_part, attribute = handler.rsplit(".", 1)
    module_part = module_part.replace("/", ".")
    candidates = [(template_dir / code_uri).resolve(), (project_dir / code_uri).resolve()]
    for folder in candidates:
        if not folder.is_dir():
            continue
        try:
            relative = folder.relative_to(project_dir.resolve())
        except ValueError:
            continue
        prefix = ".".join(part for part in relative.parts if part)
        module = f"{prefix}.{module_part}" if prefix else module_part
        if (project_dir / Path(*module.split("."))).with_suffix(".py").exists():
            return module, attribute
    raise TemplateError(f"{logical_id}: handler {handler} not found under CodeUri {code_uri}")


class StackTemplate:
    """A parsed template plus the project folder it belongs to."""

    def __init__(self, path: str | Path, project_dir: str | Path | None = None):
        self.path = Path(path).resolve()
        self.project_dir = Path(project_dir).resolve() if project_dir else self.path.parent.parent
        self.document = load_template(self.path)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.document["Resources"]

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if isinstance(r, dict) and r.get("Type") in types}

    def functions(self) -> dict[str, FunctionSpec]:
        specs = {}
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = _merged_function_properties(self.document, resource.get("Properties") or {})
            module, attribute = _handler_module(
                props.get("CodeUri"), props.get("Handler", ""), self.path.parent, self.project_dir, logical_id
            )
            name = props.get("FunctionName")
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                module=module,
                attribute=attribute,
                function_name=name if isinstance(name, str) else f"{LOCAL_STACK_NAME}-{logical_id}",
                memory_mb=int(props.get("MemorySize") or 128),
                timeout_seconds=int(props.get("Timeout") or 3),
                environment=dict(props["Environment"]["Variables"]),
            )
        return specs

    def _events(self, *types: str) -> list[tuple[str, str, dict[str, Any]]]:
        found = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            events = (resource.get("Properties") or {}).get("Events") or {}
            for name, event in events.items():
                if isinstance(event, dict) and event.get("Type") in types:
                    found.append((logical_id, name, event.get("Properties") or {}))
        return found

    def api_routes(self) -> list[ApiRoute]:
        routes = []
        for function, _, props in self._events("Api"):
            path, method = props.get("Path"), props.get("Method")
            if isinstance(path, str) and isinstance(method, str):
                routes.append(ApiRoute(function=function, path=path, method=method.upper()))
        return routes

    def queue_subscriptions(self) -> list[QueueSubscription]:
        found = []
        for function, name, props in self._events("SQS"):
            queue = props.get("Queue")
            if isinstance(queue, dict) and "Fn::GetAtt" in queue:
                target = queue["Fn::GetAtt"]
                logical = target.split(".")[0] if isinstance(target, str) else target[0]
            elif isinstance(queue, dict) and "Ref" in queue:
                logical = queue["Ref"]
            else:
                raise TemplateError(f"{function}.{name}: Queue must be !GetAtt <Queue>.Arn")
            enabled = props.get("Enabled", True)
            found.append(
                QueueSubscription(
                    function=function,
                    queue=str(logical),
                    batch_size=int(props.get("BatchSize") or 10),
                    batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds") or 0),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (props.get("FunctionResponseTypes") or []),
                    enabled=enabled if isinstance(enabled, bool) else True,
                    maximum_concurrency=int((props.get("ScalingConfig") or {}).get("MaximumConcurrency") or 1),
                )
            )
        return found

    def schedules(self) -> list[Schedule]:
        """Schedules that invoke a function: its Schedule/ScheduleV2 events, and
        AWS::Scheduler::Schedule / AWS::Events::Rule resources whose target is ``!GetAtt <F>.Arn``."""
        functions = set(self.of_type("AWS::Serverless::Function"))
        found = []
        for function, name, props in self._events("Schedule", "ScheduleV2"):
            expression = props.get("ScheduleExpression") or props.get("Schedule") or ""
            expression = expression if isinstance(expression, str) else ""
            found.append(
                Schedule(
                    function=function,
                    name=name,
                    expression=expression,
                    every_seconds=rate_seconds(expression),
                    input=props.get("Input"),
                )
            )
        for name, resource in self.of_type("AWS::Scheduler::Schedule", "AWS::Events::Rule").items():
            props = resource.get("Properties") or {}
            targets = (
                props.get("Targets") if resource["Type"] == "AWS::Events::Rule" else [props.get("Target")]
            )
            expression = props.get("ScheduleExpression")
            if not isinstance(expression, str):
                continue
            for target in targets or []:
                arn = (target or {}).get("Arn")
                attribute = arn.get("Fn::GetAtt") if isinstance(arn, dict) else None
                if isinstance(attribute, str):
                    attribute = attribute.split(".", 1)
                if attribute and attribute[0] in functions:
                    found.append(
                        Schedule(
                            function=attribute[0],
                            name=name,
                            expression=expression,
                            every_seconds=rate_seconds(expression),
                            input=target.get("Input"),
                        )
                    )
        return found


def default_template_path(start: Path | None = None) -> Path:
    """``infra/template.yaml`` of the project holding ``start`` (or this package)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "infra" / "template.yaml"
        if candidate.exists():
            return candidate
    package_project = Path(__file__).resolve().parents[2]
    return package_project / "infra" / "template.yaml"
