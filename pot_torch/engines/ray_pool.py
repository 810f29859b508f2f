"""Chunks on a pool of Ray actors: each actor loads a model once, results come back in task order, and the
chunks of an actor that dies are run again on a replacement actor.

Results do not depend on which actor ran a chunk (every actor compiles the same model the same way), so
retrying a chunk elsewhere gives the same result, and the driver merges results in task order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


class Task(NamedTuple):
    """One chunk of one job (a ``predict`` call, or one model of ``predict_models``)."""

    job: int
    last: bool  # the job's last chunk
    blob: Any  # ObjectRef of the model's ``ModelBytes``
    digest: str
    layout: Any  # ObjectRef of the statistics layout, or None
    indices: List[int]
    batch_size: int
    per_sample: bool


@dataclass
class _Slot:
    actor: Any
    digest: Optional[str] = None  # the model the actor holds (or will, once its queued set_model ran)
    number: int = 0  # the slot's position, for messages
    deaths: List[str] = field(default_factory=list)


class ActorPool:
    """A fixed number of actors running :class:`Task` s, at most ``in_flight`` queued per actor.

    :param ray: the ``ray`` module.
    :param start_actor: starts one actor (a ``ChunkWorker`` handle).
    :param size: the number of actors.
    :param max_restarts: how many dead actors may be replaced over the pool's life before giving up.
    :param max_attempts: how many times one chunk may be tried (a chunk that kills every actor it runs on).
    """

    def __init__(self, ray: Any, start_actor: Callable[[], Any], size: int, max_restarts: int = 3,
                 max_attempts: int = 3, in_flight: int = 2) -> None:
        self._ray = ray
        self._start_actor = start_actor
        self._slots = [_Slot(start_actor(), number=number) for number in range(size)]
        self._restarts_left = max_restarts
        self._max_attempts = max_attempts
        self._in_flight = in_flight

    @property
    def actors(self) -> List[Any]:
        """The live actor handles, slot order."""
        return [slot.actor for slot in self._slots]

    def run_ordered(self, tasks: Iterable[Task]) -> Iterator[Tuple[Task, Any]]:
        """Run ``tasks`` (read lazily, a window ahead) and yield ``(task, ChunkResult)`` in task order.

        :raises RuntimeError: more actors died than ``max_restarts`` allows, or one chunk was tried
            ``max_attempts`` times.
        :raises Exception: a chunk's own error (such as a data item that does not fit the model), re-raised
            as its type.
        """
        ray = self._ray
        source = iter(tasks)
        pending: List[Tuple[int, Task]] = []
        in_flight: Dict[Any, Tuple[_Slot, Any, int, Task]] = {}  # ref -> (slot, actor, sequence, task)
        finished: Dict[int, Tuple[Task, Any]] = {}
        attempts: Dict[int, int] = {}
        read = emitted = 0
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * self._in_flight * len(self._slots):
                task = next(source, None)
                if task is None:
                    exhausted = True
                else:
                    pending.append((read, task))
                    read += 1
            self._dispatch(pending, in_flight)
            if not in_flight:
                return
            ref = ray.wait(list(in_flight), num_returns=1)[0][0]
            slot, actor, sequence, task = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                if error.actor_init_failed:
                    raise RuntimeError(
                        f"RayEngine: an actor could not start: {error}\nThe data loader, the metric and their "
                        "classes must unpickle in every actor: define them in a module installed (or on "
                        "PYTHONPATH) on every node, e.g. ray.init(runtime_env={'env_vars': {'PYTHONPATH': ...}})"
                    ) from None
                attempts[sequence] = attempts.get(sequence, 1) + 1
                self._replace(slot, actor, error)
                if attempts[sequence] > self._max_attempts:
                    raise RuntimeError(
                        f"RayEngine: the chunk of data set items {_span(task.indices)} was tried "
                        f"{self._max_attempts} times and its actor died each time (last: {error}); check "
                        "these items and the actors' memory") from error
                pending.append((sequence, task))
                pending.sort(key=lambda entry: entry[0])
                continue
            except ray.exceptions.RayTaskError as error:
                raise error.as_instanceof_cause() from None
            finished[sequence] = (task, result)
            while emitted in finished:
                yield finished.pop(emitted)
                emitted += 1

    def _dispatch(self, pending: List[Tuple[int, Task]], in_flight: Dict[Any, Tuple[_Slot, Any, int, Task]]) -> None:
        """Queue pending tasks on actors with room, one per actor per round; an actor takes the first task of
        the model it holds, else the first task (and loads its model first)."""
        while pending:
            queued = False
            for slot in self._slots:
                busy = sum(1 for entry in in_flight.values() if entry[1] is slot.actor)
                if busy >= self._in_flight or not pending:
                    continue
                sequence, task = pending.pop(self._choose(slot, pending))
                digest: Any = task.digest
                if slot.digest != task.digest:
                    logger.debug("RayEngine: actor %d loads model %s (job %d)", slot.number, task.digest[:12], task.job)
                    digest = slot.actor.set_model.remote(task.blob)  # run() waits for it and gets the digest
                    slot.digest = task.digest
                ref = slot.actor.run.remote(digest, task.layout, task.indices, task.batch_size, task.per_sample)
                in_flight[ref] = (slot, slot.actor, sequence, task)
                queued = True
            if not queued:
                return

    def _choose(self, slot: _Slot, pending: List[Tuple[int, Task]]) -> int:
        """The position in ``pending`` of the task for ``slot``: the first of the model it holds, else the
        first of a model no other actor holds (several models run at once, each compiled once), else the
        first one."""
        held = {other.digest for other in self._slots if other is not slot}
        for wanted in (lambda digest: digest == slot.digest, lambda digest: digest not in held):
            position = next((i for i, (_, task) in enumerate(pending) if wanted(task.digest)), None)
            if position is not None:
                return position
        return 0

    def _replace(self, slot: _Slot, actor: Any, error: Exception) -> None:
        """Start a new actor in place of the dead ``actor`` (once, however many of its chunks report it)."""
        if slot.actor is not actor:
            return
        if self._restarts_left <= 0:
            raise RuntimeError(f"RayEngine: actor {slot.number} died and no restarts are left "
                               f"(max_actor_restarts); last error: {error}") from error
        self._restarts_left -= 1
        logger.warning("RayEngine: actor %d died (%s); its chunks run again on a new actor", slot.number,
                       type(error).__name__)
        try:
            self._ray.kill(actor)
        except Exception:  # noqa: BLE001  (already gone)
            pass
        slot.actor, slot.digest = self._start_actor(), None

    def close(self) -> None:
        """Stop every actor."""
        for slot in self._slots:
            try:
                self._ray.kill(slot.actor)
            except Exception:  # noqa: BLE001  (already gone, or Ray shut down)
                pass
        self._slots = []


def _span(indices: List[int]) -> str:
    """``[a..b]`` (or ``[]``) for messages."""
    return f"[{indices[0]}..{indices[-1]}]" if indices else "[]"
