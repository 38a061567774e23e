"""What the relay knows of runs, so a client gets MLflow's error at once rather than never.

At the first write to a run the relay asks the upstream for it (runs/get): an
unknown run is refused with the upstream's 404, a deleted one with MLflow's
"must be in the 'active' state" error, and the run's logged params are
remembered, together with the params still waiting in the spool, so that
changing a param is refused at once. Runs created, deleted or restored through
the relay update what it knows without a call.

This is a cache, never the authority: the upstream still decides when the
batch arrives, and whatever it refuses then is dead-lettered by the forwarder.
If the upstream cannot be asked (an outage), the write is taken on trust and
the run is asked about again later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from gateway.errors import GatewayError
from gateway.model import RunWrite
from gateway.mlflow import runs
from gateway.mlflow.runs import param_conflict_error
from gateway.relay.spool import Spool
from gateway.relay.upstream import Upstream

log = logging.getLogger(__name__)

# Runs whose state and params are kept; past it the least recently written run
# is forgotten (and asked about again at its next write).
MAX_KNOWN_RUNS = 20_000
# Seconds before a run that could not be checked (upstream unreachable) is asked about again.
RECHECK_AFTER = 5.0


@dataclass
class RunState:
    """One run as the relay knows it."""

    lifecycle_stage: str
    params: dict[str, str] = field(default_factory=dict)
    verified: bool = True
    recheck_at: float = 0.0


class _RunInfo(msgspec.Struct):
    lifecycle_stage: str = "active"


class _Param(msgspec.Struct):
    key: str
    value: str = ""


class _RunData(msgspec.Struct):
    params: list[_Param] = []


class _Run(msgspec.Struct):
    info: _RunInfo
    data: _RunData = msgspec.field(default_factory=_RunData)


class _GetRunAnswer(msgspec.Struct):
    run: _Run


_decode_run = msgspec.json.Decoder(_GetRunAnswer).decode


class RunKnowledge:
    """Run states and logged params, checked upstream once per run.

    Args:
        upstream: asked with runs/get at the first write to a run.
        spool: holds params not yet delivered (they count as logged).
    """

    def __init__(self, upstream: Upstream, spool: Spool) -> None:
        self._upstream = upstream
        self._spool = spool
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._checks: dict[str, asyncio.Future] = {}

    async def check_write(self, write: RunWrite) -> list[str]:
        """Refuse a write MLflow would refuse; reserve its params.

        Returns:
            The param keys this write logged for the first time, to pass to
            :meth:`release` if the write is not spooled after all.

        Raises:
            GatewayError: the upstream's error for an unknown run, MLflow's for a
                deleted run or a changed param.
        """
        state = await self._state(write.run_id)
        runs.check_run_writable(write.run_id, state.lifecycle_stage)
        conflicts = [
            (p.key, state.params[p.key], p.value)
            for p in write.params
            if p.key in state.params and state.params[p.key] != p.value
        ]
        if conflicts:
            raise param_conflict_error(write, conflicts)
        added = [p.key for p in write.params if p.key not in state.params]
        for p in write.params:
            state.params[p.key] = p.value
        return added

    async def check_run(self, run_id: str) -> None:
        """Refuse an unknown or inactive run (log-batch with nothing in it)."""
        state = await self._state(run_id)
        runs.check_run_writable(run_id, state.lifecycle_stage)

    def release(self, run_id: str, keys: list[str]) -> None:
        """Forget params reserved by a write that was not spooled."""
        state = self._runs.get(run_id)
        if state is not None:
            for key in keys:
                state.params.pop(key, None)

    # ---- what the relay saw pass through ---------------------------------------------

    def created(self, run_id: str) -> None:
        self._remember(run_id, RunState("active"))

    def set_stage(self, run_id: str, stage: str) -> None:
        state = self._runs.get(run_id)
        if state is not None:
            state.lifecycle_stage = stage

    def forget_all(self) -> None:
        """Forget every run's state (after an experiment-wide change)."""
        self._runs.clear()

    def rejected_upstream(self, run_id: str, status: int, error_code: str) -> None:
        """The upstream refused the run as a whole: ask about it again at the next write."""
        self._runs.pop(run_id, None)

    # ---- internals -------------------------------------------------------------------

    async def _state(self, run_id: str) -> RunState:
        state = self._runs.get(run_id)
        if state is not None:
            self._runs.move_to_end(run_id)
            if not state.verified and time.monotonic() >= state.recheck_at and run_id not in self._checks:
                state.recheck_at = time.monotonic() + RECHECK_AFTER
                asyncio.get_running_loop().create_task(self._recheck(run_id))
            return state
        pending = self._checks.get(run_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._checks[run_id] = pending
            try:
                state = await self._fetch(run_id)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved: only the waiters need it
                raise
            finally:
                self._checks.pop(run_id, None)
            self._remember(run_id, state)
            pending.set_result(state)
            return state
        return await asyncio.shield(pending)

    async def _fetch(self, run_id: str) -> RunState:
        # Spool first, then upstream: a param delivered in between is then in one of the two.
        spooled = await self._spool.params_of_run(run_id)
        answer = await self._upstream.get_run(run_id)
        if answer.status == 200:
            try:
                run = _decode_run(answer.body).run
            except msgspec.DecodeError:
                log.warning("runs/get of run %s answered with a body the relay cannot read", run_id)
                return RunState("active", {p.key: p.value for p in spooled}, verified=False)
            params = {p.key: p.value for p in run.data.params}
            params.update((p.key, p.value) for p in spooled)
            return RunState(run.info.lifecycle_stage, params)
        if answer.transient:
            log.warning(
                "could not check run %s upstream (%s); accepting its writes and checking again later",
                run_id,
                answer.transport_error or answer.status,
            )
            return RunState(
                "active",
                {p.key: p.value for p in spooled},
                verified=False,
                recheck_at=time.monotonic() + RECHECK_AFTER,
            )
        error_code, message = answer.error()
        raise GatewayError(message, error_code)

    async def _recheck(self, run_id: str) -> None:
        answer = await self._upstream.get_run(run_id)
        state = self._runs.get(run_id)
        if state is None or answer.status != 200:
            return
        try:
            run = _decode_run(answer.body).run
        except msgspec.DecodeError:
            return
        for p in run.data.params:
            state.params.setdefault(p.key, p.value)
        state.lifecycle_stage = run.info.lifecycle_stage
        state.verified = True

    def _remember(self, run_id: str, state: RunState) -> None:
        self._runs[run_id] = state
        self._runs.move_to_end(run_id)
        while len(self._runs) > MAX_KNOWN_RUNS:
            self._runs.popitem(last=False)
