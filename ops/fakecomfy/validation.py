"""Prompt validation, with the error shapes of a real server's 400 answers.

:func:`validate_prompt` returns ``(ok, error, outputs, node_errors)``: ``error`` is
the top-level ``{type, message, details, extra_info}`` of a refusal, ``outputs`` the
output nodes that will run, ``node_errors`` maps a node id to
``{errors, dependent_outputs, class_type}``. A prompt with at least one valid output
is accepted even when other outputs failed (their errors still come back).

Literal values are converted in place (``"512"`` for an INT becomes ``512``), as a
real server does, so history and queue show the converted graph. Malformed input
that a real server trips over (a node that is not an object, an unhashable class
type) raises, and the caller answers with the real server's 500.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from ops.fakecomfy.nodes import NodeEnv, NodeType

__all__ = ["validate_prompt"]

Verdict = tuple[bool, list[dict[str, Any]]]
Result = tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]


def _error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def full_type_name(kind: type) -> str:
    """``KeyError`` for builtins, ``PIL.UnidentifiedImageError`` otherwise."""
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _types_match(received: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        wanted = "COMBO"
    if received == wanted or "*" in (received, wanted):
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in wanted.split(",")})


def _is_link(value: Any) -> bool:
    return isinstance(value, list)


def validate_prompt(
    prompt: dict[str, Any],
    registry: Mapping[str, NodeType],
    env: NodeEnv,
    partial: Sequence[str] | None = None,
) -> Result:
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            raise TypeError(f"node {node_id!r} is not an object")
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        if "class_type" not in node:
            message = f"Node '{title or f'ID #{node_id}'}' has no class_type. The workflow may be corrupted or a custom node is missing."  # noqa: E501
            error = _error(
                "missing_node_type",
                message,
                f"Node ID '#{node_id}'",
                node_id=node_id,
                class_type=None,
                node_title=title,
            )
            return False, error, [], {}
        class_type = node["class_type"]
        node_type = registry.get(class_type)
        if node_type is None:
            title = title or class_type
            message = f"Node '{title}' not found. The custom node may not be installed."
            error = _error(
                "missing_node_type",
                message,
                f"Node ID '#{node_id}'",
                node_id=node_id,
                class_type=class_type,
                node_title=title,
            )
            return False, error, [], {}
        if node_type.output_node and (partial is None or node_id in partial):
            outputs.append(node_id)
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    return _Validator(prompt, registry, env).run(outputs)


class _Validator:
    def __init__(self, prompt: dict[str, Any], registry: Mapping[str, NodeType], env: NodeEnv):
        self.prompt = prompt
        self.registry = registry
        self.env = env
        self.validated: dict[str, Verdict] = {}
        self.cycles: dict[str, list[dict[str, Any]]] = {}
        self._visited: set[str] = set()

    def run(self, outputs: list[str]) -> Result:
        for output in outputs:
            self._find_cycles(output)
        for node_id, errors in self.cycles.items():
            self.validated[node_id] = (False, errors)
        good: list[str] = []
        failed: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        for output in outputs:
            try:
                valid, reasons = self._node(output)
            except Exception as ex:
                valid, reasons = (
                    False,
                    [
                        _exception(
                            "exception_during_validation", "Exception when validating node", ex
                        )
                    ],
                )
                self.validated[output] = (False, reasons)
            if valid:
                good.append(output)
                continue
            failed.append((output, reasons))
            for node_id, (ok, errors) in self.validated.items():
                if ok or not errors:
                    continue
                if node_id not in node_errors:
                    node_errors[node_id] = {
                        "errors": errors,
                        "dependent_outputs": [],
                        "class_type": self.prompt[node_id]["class_type"],
                    }
                node_errors[node_id]["dependent_outputs"].append(output)
        if good:
            return True, None, good, node_errors
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        error = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return False, error, [], node_errors

    def _find_cycles(self, start: str) -> None:
        path: list[str] = []
        on_path: set[str] = set()
        done = self._visited

        def visit(node_id: str) -> None:
            if node_id in done:
                return
            path.append(node_id)
            on_path.add(node_id)
            for value in self.prompt[node_id].get("inputs", {}).values():
                if not (_is_link(value) and len(value) == 2):
                    continue
                source = value[0]
                if not isinstance(source, str) or source not in self.prompt:
                    continue
                if source in on_path:
                    self._mark_cycle([*path[path.index(source) :], source])
                elif isinstance(self.prompt[source], dict):
                    visit(source)
            path.pop()
            on_path.discard(node_id)
            done.add(node_id)

        visit(start)

    def _mark_cycle(self, cycle: list[str]) -> None:
        names = " -> ".join(f"{n} ({self.prompt[n].get('class_type')})" for n in cycle)
        for node_id in cycle[:-1]:
            self.cycles.setdefault(node_id, []).append(
                _error(
                    "dependency_cycle", "Dependency cycle detected", names, cycle_nodes=cycle[:-1]
                )
            )

    def _node(self, node_id: str) -> Verdict:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        node_type = self.registry[node["class_type"]]
        inputs = node.setdefault("inputs", {})
        spec = node_type.inputs(self.env)
        required = spec.get("required", {})
        errors: list[dict[str, Any]] = []
        valid = True
        for name, config in [*required.items(), *spec.get("optional", {}).items()]:
            if name not in inputs:
                if name in required:
                    errors.append(
                        _error(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            input_name=name,
                        )
                    )
                continue
            if _is_link(inputs[name]):
                linked = self._link(name, config, inputs[name], errors)
                valid = valid and linked
            else:
                self._literal(node_type, inputs, name, config, errors)
        self._custom(node_type, inputs, errors)
        verdict: Verdict = (not errors and valid, errors)
        self.validated[node_id] = verdict
        return verdict

    def _link(self, name: str, config: list[Any], value: list[Any], errors: list[Any]) -> bool:
        if len(value) != 2:
            errors.append(
                _error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name,
                    input_name=name,
                    input_config=config,
                    received_value=value,
                )
            )
            return True
        try:
            source = value[0]
            received = self.registry[self.prompt[source]["class_type"]].outputs[value[1]]
            if not _types_match(received, config[0]):
                details = f"{name}, received_type({received}) mismatch input_type({config[0]})"
                errors.append(
                    _error(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        details,
                        input_name=name,
                        input_config=config,
                        received_type=received,
                        linked_node=value,
                    )
                )
                return True
            return self._node(source)[0]
        except Exception as ex:
            error = _exception(
                "exception_during_inner_validation", "Exception when validating inner node", ex
            )
            error["extra_info"] = {
                "input_name": name,
                "input_config": config,
                **error["extra_info"],
                "linked_node": value,
            }
            errors.append(error)
            return True

    def _literal(
        self,
        node_type: NodeType,
        inputs: dict[str, Any],
        name: str,
        config: list[Any],
        errors: list[Any],
    ) -> None:
        kind = config[0]
        options = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
        value = inputs[name]
        converters: dict[str, Any] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        if isinstance(kind, str) and kind in converters:
            try:
                value = converters[kind](value)
                inputs[name] = value
            except Exception as ex:
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {kind} value",
                        f"{name}, {value}, {ex}",
                        input_name=name,
                        input_config=config,
                        received_value=value,
                        exception_message=str(ex),
                    )
                )
                return
        if name in node_type.validated:
            return
        extra = {"input_name": name, "input_config": config, "received_value": value}
        if "min" in options and value < options["min"]:
            errors.append(
                _error(
                    "value_smaller_than_min",
                    f"Value {value} smaller than min of {options['min']}",
                    name,
                    **extra,
                )
            )
            return
        if "max" in options and value > options["max"]:
            errors.append(
                _error(
                    "value_bigger_than_max",
                    f"Value {value} bigger than max of {options['max']}",
                    name,
                    **extra,
                )
            )
            return
        if isinstance(kind, list) and value not in kind:
            listing = f"(list of length {len(kind)})" if len(kind) > 20 else str(kind)
            extra["input_config"] = None if len(kind) > 20 else config
            errors.append(
                _error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: '{value}' not in {listing}",
                    **extra,
                )
            )

    def _custom(self, node_type: NodeType, inputs: dict[str, Any], errors: list[Any]) -> None:
        if node_type.validate is None:
            return
        given = [n for n in node_type.validated if n in inputs and not _is_link(inputs[n])]
        if not given:
            return
        verdict = node_type.validate(self.env, inputs)
        if verdict is True:
            return
        for name in given:
            details = name if verdict is False else f"{name} - {verdict}"
            errors.append(
                _error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    details,
                    input_name=name,
                )
            )


def _exception(kind: str, message: str, ex: Exception) -> dict[str, Any]:
    _, _, tb = sys.exc_info()
    return _error(
        kind,
        message,
        str(ex),
        exception_message=str(ex),
        exception_type=full_type_name(type(ex)),
        traceback=traceback.format_tb(tb),
    )
