"""The pipeline plug-in contract: frames in, answers out, and the lifecycle around them.

A pipeline is a class with a params model (validated per session and per frame), an
options model (validated once, from its config), and three hooks the hosting pipeline
actor calls on **its own thread**, never on the event loop::

    p = Kind(config)        # cheap; may run on any thread; raises Invalid on bad options
    p.load()                # once, heavy init (weights, warm-up)
    p.process(batch)  ...   # many times, one answer per frame, same order
    p.close()               # once, when the actor stops, also after load/process raised

A plug-in may also declare two per-frame **stages** around ``process``: ``prepare``
(decode, resize) and ``finish`` (encode). They run on a thread pool sized to the
machine, in parallel with ``process`` and with each other, on a *stage instance*:
one made with ``Kind(config)`` and never loaded, so they may read ``self.options``
but nothing ``load`` made, and must not change the instance::

    p.prepare(frame) -> data          # per frame, before process; FrameIn.data holds it
    p.process(batch) -> [output...]   # one output (or EaselError) per frame
    p.finish(frame, output) -> Answer # per frame, after process

``process`` reports a failure of **one frame** by putting an ``EaselError`` in that
frame's slot; the other frames and the pipeline are fine. Any exception *raised* from
``load`` or ``process`` means the pipeline's state can't be trusted: the actor crashes
and its supervisor restarts it with a fresh instance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.errors import BadParams, EaselError, Invalid
from engine.types import PipelineConfig
from engine.validation import field_problems, listing

from .context import PluginContext

__all__ = [
    "Answer",
    "FrameIn",
    "FrameOut",
    "NoOptions",
    "NoParams",
    "Params",
    "Pipeline",
    "PipelineConfig",
    "PluginContext",
    "build",
    "check_answers",
    "each_frame",
]

P = TypeVar("P", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)


class Params(BaseModel):
    """Convenient base for params and options models: immutable, unknown keys rejected.

    Rejecting unknown keys turns a typo (``strenght``) into a ``bad_params`` error
    instead of a silently ignored setting.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoParams(Params):
    """Params model of a pipeline that takes none."""


class NoOptions(Params):
    """Options model of a pipeline that takes none."""


@dataclass(frozen=True, slots=True)
class FrameIn(Generic[P]):
    """One input frame, as the pipeline actor hands it to ``process``.

    ``width``/``height`` are required for ``raw/*`` content types and optional
    otherwise. ``params`` is the validated params model for this frame (the session's
    params merged with the frame's overrides).
    """

    payload: bytes | memoryview
    content_type: str
    width: int | None
    height: int | None
    params: P
    data: Any = None
    """What the plug-in's ``prepare`` made of this frame (``None`` without one)."""


@dataclass(frozen=True, slots=True)
class FrameOut:
    """One result frame. ``width``/``height`` are set for ``raw/*`` content types."""

    payload: bytes | memoryview
    content_type: str
    width: int | None = None
    height: int | None = None


Answer: TypeAlias = FrameOut | EaselError
"""What ``process`` returns per frame: a result, or the error about that frame alone."""


class Pipeline(ABC, Generic[P]):
    """Base of every pipeline plug-in, generic over its params model ``P``.

    Subclasses set the class attributes ``name`` (the kind), ``params_model`` and, if
    they take options, ``options_model`` (narrowing the ``options`` annotation to it),
    and may change ``max_batch``. They implement ``process`` and, when they hold
    resources, ``load`` and ``close``.

    An instance is used by one actor thread at a time; it needs no locking.
    """

    name: ClassVar[str]
    """The kind: how configs and the catalog name this plug-in."""
    params_model: type[P]
    options_model: type[BaseModel] = NoOptions
    max_batch: int = 1
    """The class value is the kind's default; an instance holds the effective limit."""
    blocking: ClassVar[bool] = True
    """Whether ``load``/``process``/``close`` may block. A kind whose calls take
    microseconds and never block (``passthrough``) says ``False`` and is hosted on the
    event loop, saving a thread hop per frame; anything that decodes, infers or does
    I/O keeps the default and gets a thread of its own."""
    max_wait_ms: float = 0.0
    """How long a free replica may wait for a batch to fill before ``process``. The
    default, 0, takes whatever frames are waiting when the replica becomes free (the
    batch size follows the load and nothing waits on a timer); a kind whose batches
    cost much less per frame than single calls may ask for a few milliseconds."""
    uses_context: ClassVar[bool] = False
    """Whether the kind uses the engine's services: it is then built as
    ``Kind(config, context)`` with the engine's :class:`PluginContext` (see
    :func:`build`), and runs in the engine's process only (``thread`` or ``loop``
    hosting)."""

    options: BaseModel

    def __init__(self, config: PipelineConfig, context: PluginContext | None = None) -> None:
        """Keep the config (and the context, for a kind that ``uses_context``) and
        validate its options. Cheap: do heavy work in ``load``.

        Runs on any thread. Raises ``Invalid`` naming each bad option.
        """
        self.config = config
        self.context = context or PluginContext()
        self.options = self.parse_options(config.options)
        if config.max_batch is not None:
            self.max_batch = config.max_batch

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any]) -> P:
        """Validate a params mapping into the params model.

        Pure and thread-safe: sessions call it on the event loop when params change.
        Raises ``BadParams`` whose message names each bad field; ``extra["fields"]``
        maps each dotted field path to its problem.
        """
        return _validate(cls.params_model, raw, BadParams, "params")

    @classmethod
    def parse_options(cls, raw: Mapping[str, Any]) -> BaseModel:
        """Validate config options (REST calls it before storing a config).

        Raises ``Invalid`` naming each bad option.
        """
        return _validate(cls.options_model, raw, Invalid, "options")

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        """The JSON schema of the params model (for ``pipeline.info`` and the API docs)."""
        return cls.params_model.model_json_schema()

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        """The JSON schema of the options model."""
        return cls.options_model.model_json_schema()

    def load(self) -> None:
        """Heavy initialisation (weights, warm-up); called once before any ``process``.

        Runs on the pipeline actor's thread. Raising means the pipeline can't start:
        the actor fails, ``close`` is still called, and the supervisor retries with
        back-off (escalating if it keeps failing).
        """

    @abstractmethod
    def process(self, batch: Sequence[FrameIn[P]]) -> list[Any]:
        """Answer a micro-batch of 1..``max_batch`` frames: one answer each, same order.

        The answers are ``FrameOut``/``EaselError`` (``Answer``), unless the kind has a
        ``finish`` stage: then each non-error slot holds whatever ``finish`` takes.

        Runs on the pipeline actor's thread and may block (inference, codecs).
        A frame that can't be handled gets an ``EaselError`` in its slot
        (``BadContent``, ``PipelineError``…), see ``each_frame``. Raising instead means
        the pipeline is broken: the actor crashes, every frame of the batch is
        answered ``pipeline_error``, and a fresh instance is loaded.
        """

    @classmethod
    def staged(cls) -> bool:
        """Whether the kind declares ``prepare`` or ``finish`` (its frames then go
        through the stage pool around ``process``)."""
        return cls.prepare is not Pipeline.prepare or cls.finish is not Pipeline.finish

    def prepare(self, frame: FrameIn[P]) -> Any:
        """Optional stage: per-frame work before ``process`` (decode, resize).

        Runs on the stage pool, on the stage instance (never loaded), concurrently with
        other frames and with ``process``: it must be thread-safe and leave ``self``
        unchanged. What it returns reaches ``process`` as ``frame.data``. An
        ``EaselError`` it raises (``BadContent``…) answers that frame alone; any other
        exception answers it ``pipeline_error`` (and is logged): the replica is fine.
        """
        return None

    def finish(self, frame: FrameIn[P], output: Any) -> Answer:
        """Optional stage: per-frame work after ``process`` (encode).

        ``output`` is what ``process`` put in the frame's slot (anything but an
        ``EaselError``, which answers the frame without ``finish``). Runs like
        ``prepare``; returns the frame's ``FrameOut`` (or an ``EaselError``).
        """
        if isinstance(output, FrameOut | EaselError):
            return output
        raise TypeError(f"process answered a {type(output).__name__} and there is no finish")

    def close(self) -> None:
        """Release what ``load`` acquired; called once when the actor stops.

        Runs on the pipeline actor's thread, also after ``load`` or ``process`` raised,
        so it must cope with a partial load. An exception is logged and ignored.
        """


def build(
    plugin: type[Pipeline[Any]], config: PipelineConfig, context: PluginContext
) -> Pipeline[Any]:
    """An instance of ``plugin`` for ``config``, given ``context`` if the kind
    ``uses_context`` (other kinds keep their one-argument constructor). Raises what the
    constructor raises (``Invalid``)."""
    return plugin(config, context) if plugin.uses_context else plugin(config)


def each_frame(
    batch: Sequence[FrameIn[P]], handle: Callable[[FrameIn[P]], FrameOut]
) -> list[Answer]:
    """Answer each frame with ``handle``; an ``EaselError`` it raises answers that frame only.

    The one mechanism for pipelines whose frames are independent. Any other exception
    propagates: it means the pipeline is broken.
    """
    answers: list[Answer] = []
    for frame in batch:
        try:
            answers.append(handle(frame))
        except EaselError as exc:
            answers.append(exc)
    return answers


def check_answers(
    batch: Sequence[FrameIn[Any]], answers: object, *, finished: bool = True
) -> list[Answer]:
    """Check that ``answers`` keep the ``process`` contract and return them typed.

    For the hosting actor, right after ``process``. Raises ``TypeError`` (a broken
    pipeline, so the actor should crash) when it isn't a list with exactly one
    ``FrameOut`` or ``EaselError`` per frame. With ``finished=False`` (a kind with a
    ``finish`` stage) only the list and its length are checked: items go to ``finish``.
    """
    if not isinstance(answers, list):
        raise TypeError(f"process must return a list, got {type(answers).__name__}")
    if len(answers) != len(batch):
        raise TypeError(f"process returned {len(answers)} answers for {len(batch)} frames")
    if not finished:
        return answers
    for index, answer in enumerate(answers):
        if not isinstance(answer, FrameOut | EaselError):
            raise TypeError(
                f"answer {index} is a {type(answer).__name__}, not FrameOut or EaselError"
            )
    return answers


def _validate(model: type[M], raw: Mapping[str, Any], error: type[EaselError], what: str) -> M:
    try:
        return model.model_validate(raw if isinstance(raw, dict) else dict(raw))
    except ValidationError as exc:
        fields = field_problems(exc)
        raise error(f"bad {what}: {listing(fields)}", fields=fields) from None
