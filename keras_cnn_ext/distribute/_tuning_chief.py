"""The chief of a distributed search: KerasTuner's oracle service plus a heartbeat service and a
monitor that reclaims the trials of lost workers and gives up when no worker is left.

Replaces `keras_tuner.src.distribute.oracle_chief.start_server` (which `Tuner.search` calls on the
chief and which never returns while a worker that once asked for a trial has not been told to
stop). The oracle, its gRPC service and its files are KerasTuner's own.
"""

import collections
import os
import sys
import time
from concurrent import futures

from keras_cnn_ext.distribute._tuning_common import (
    _HEARTBEAT,
    MAX_LOSSES,
    STATUS_FILE,
    Heartbeats,
    TuningClusterError,
    write_json,
)


_IDLE_PAUSE = 1.0  # seconds between the requests of a worker waiting for the last trials


def _log(message):
    stamp = time.strftime("%H:%M:%S")
    print(f"[keras-cnn-ext tune chief {stamp}] {message}", file=sys.stderr, flush=True)


def _servicer_class():
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief
    from keras_tuner.src.engine import trial as trial_module
    from keras_tuner.src.engine.oracle import synchronized

    @synchronized
    def keep_waiting(oracle, tuner_id, orphans):
        return (tuner_id not in oracle.ongoing_trials
                and not oracle._retry_queue  # noqa: SLF001
                and oracle.max_trials is not None
                and len(oracle.trials) >= oracle.max_trials
                and (orphans or any(t != tuner_id for t in oracle.ongoing_trials)))

    @synchronized
    def is_running(oracle, trial_id):
        return any(t.trial_id == trial_id for t in oracle.ongoing_trials.values())

    class Servicer(oracle_chief.OracleServicer):
        """KerasTuner's service, refusing lost workers and stale reports of reclaimed trials."""

        def __init__(self, oracle, heartbeats, orphans, adoption_wait):
            super().__init__(oracle)
            self.heartbeats = heartbeats
            self.orphans = orphans
            self.adoption_wait = adoption_wait

        def CreateTrial(self, request, context):  # noqa: N802 - gRPC method name
            tuner_id = request.tuner_id
            if not self.heartbeats.beat(tuner_id):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"tuner {tuner_id!r} was declared lost; restart it to rejoin")
            if self._keep_waiting(tuner_id):
                # No new trial, but others still run one: instead of STOPPED (after which the
                # worker leaves), answer IDLE after a pause, so the worker is there to take a
                # trial back should its worker be lost. KerasTuner's workers ask again at once.
                time.sleep(_IDLE_PAUSE)
                trial = trial_module.Trial(self.oracle.get_space(),
                                           status=trial_module.TrialStatus.IDLE)
                return protos.get_service().CreateTrialResponse(trial=trial.to_proto())
            response = super().CreateTrial(request, context)
            trial = self.oracle.ongoing_trials.get(tuner_id)
            hb = self.heartbeats
            with hb.lock:
                if trial is not None and (not hb.assignments[trial.trial_id]
                                          or hb.assignments[trial.trial_id][-1] != tuner_id):
                    hb.assignments[trial.trial_id].append(tuner_id)
                if tuner_id not in self.oracle.tuner_ids and trial is None:
                    hb.finished.add(tuner_id)  # told to stop: the search has no trial left
            return response

        def _keep_waiting(self, tuner_id):
            return keep_waiting(self.oracle, tuner_id, self.orphans)

        def _check_running(self, trial_id, context):
            # After a restart of the chief, a worker's report of its in-flight trial may come
            # before the heartbeat that gives the (queued) trial back to it: wait for that.
            deadline = time.monotonic() + self.adoption_wait
            while not is_running(self.oracle, trial_id) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not is_running(self.oracle, trial_id):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"trial {trial_id} is not running (its worker was declared lost "
                              "and the trial went back to the queue)")

        def UpdateTrial(self, request, context):  # noqa: N802
            self._check_running(request.trial_id, context)
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):  # noqa: N802
            self._check_running(request.trial.trial_id, context)
            return super().EndTrial(request, context)

    return Servicer


def _heartbeat_handler(heartbeats, adopt):
    import grpc

    service, method = _HEARTBEAT.strip("/").split("/")

    def beat(request, context):
        tuner_id, _, trial_id = request.decode("utf-8", "replace").partition("\n")
        if not heartbeats.beat(tuner_id):
            return b"lost"
        if trial_id and adopt(tuner_id, trial_id):
            with heartbeats.lock:
                heartbeats.assignments[trial_id].append(tuner_id)
            _log(f"worker {tuner_id!r} is still running trial {trial_id}: it keeps it")
        return b"ok"

    return grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(beat)})


def _oracle_functions():
    from keras_tuner.src.engine import trial as trial_module
    from keras_tuner.src.engine.oracle import synchronized

    @synchronized
    def reclaim(oracle, tuner_id, losses):
        """Takes a lost worker's trial back (under the oracle's lock); returns its id."""
        oracle.tuner_ids.discard(tuner_id)
        trial = oracle.ongoing_trials.pop(tuner_id, None)
        if trial is None:
            return None
        losses[trial.trial_id] += 1
        if losses[trial.trial_id] >= MAX_LOSSES:
            trial.status = trial_module.TrialStatus.FAILED
            trial.message = (f"its worker was lost {losses[trial.trial_id]} times "
                             f"(last: {tuner_id}); not retried again")
            oracle.ongoing_trials[tuner_id] = trial  # end_trial pops it
            oracle.end_trial(trial)
        else:
            # Back to the queue without counting as a failure: what Oracle.reload does with
            # the trials that were in flight when a search stopped.
            oracle._retry_queue.append(trial.trial_id)  # noqa: SLF001
            oracle.save()
        return trial.trial_id

    @synchronized
    def hold_orphans(oracle):
        """The trials that were running when the previous chief stopped (`Oracle.reload` put
        them in the retry queue): held back from other workers for a while, so that the
        workers still running them can claim them with their next heartbeat."""
        queue = oracle._retry_queue  # noqa: SLF001
        orphans = {t for t in queue
                   if oracle.trials[t].status == trial_module.TrialStatus.RUNNING}
        queue[:] = [t for t in queue if t not in orphans]
        return orphans

    @synchronized
    def release_orphans(oracle, orphans):
        """Unclaimed orphans go back to the queue, for any worker."""
        released = sorted(orphans)
        oracle._retry_queue.extend(released)  # noqa: SLF001
        orphans.clear()
        oracle.save()
        return released

    @synchronized
    def adopt(oracle, tuner_id, trial_id, orphans):
        """A worker's heartbeat names a trial that was running when the previous chief
        stopped: the trial stays with that worker."""
        if trial_id not in orphans or tuner_id in oracle.ongoing_trials:
            return False
        orphans.discard(trial_id)
        trial = oracle.trials[trial_id]
        trial.status = trial_module.TrialStatus.RUNNING
        oracle.ongoing_trials[tuner_id] = trial
        oracle.tuner_ids.add(tuner_id)
        # KerasTuner's display keys its end-of-trial line on the begin it saw: give it one.
        oracle._display.on_trial_begin(trial)  # noqa: SLF001
        oracle.save()
        return True

    @synchronized
    def snapshot(oracle):
        statuses = collections.Counter(t.status for t in oracle.trials.values())
        return {
            "trials": len(oracle.trials),
            "max_trials": oracle.max_trials,
            "completed": statuses.get(trial_module.TrialStatus.COMPLETED, 0),
            "failed": statuses.get(trial_module.TrialStatus.FAILED, 0),
            "running": {tid: t.trial_id for tid, t in oracle.ongoing_trials.items()},
            "queued": list(oracle._retry_queue),  # noqa: SLF001
            "registered": sorted(oracle.tuner_ids),
            "end_order": list(oracle.end_order),
            "status": {t.trial_id: t.status for t in oracle.trials.values()},
        }

    return reclaim, (hold_orphans, release_orphans, adopt), snapshot


def _expected_names(workers):
    if workers is None:
        return None
    if isinstance(workers, int):
        return None
    return list(workers)


def run_chief(cluster, tuner, poll=0.5):
    """Serves `tuner.oracle` until the search ends; returns the accounting (see module doc)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    oracle = tuner.oracle
    tuner.save()
    heartbeats = Heartbeats()
    reclaim, (hold_orphans, release_orphans, adopt), snapshot = _oracle_functions()
    orphans = hold_orphans(oracle)
    servicer = _servicer_class()(oracle, heartbeats, orphans, cluster.heartbeat_timeout)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(
        (_heartbeat_handler(heartbeats, lambda t, trial: adopt(oracle, t, trial, orphans)),))
    if server.add_insecure_port(f"{cluster.host}:{cluster.port}") == 0:
        raise TuningClusterError(f"the chief cannot listen on {cluster.oracle} (port in use?)")
    server.start()
    status_path = os.path.join(tuner.project_dir, STATUS_FILE)
    expected = _expected_names(cluster.workers)
    started = time.monotonic()
    no_worker_since = started
    losses = collections.Counter()
    lost_log = []
    warned_missing = False
    state = "waiting"
    _log(f"serving the oracle on {cluster.oracle} (project {tuner.project_dir})")

    def status(state, extra=None):
        snap = snapshot(oracle)
        with heartbeats.lock:
            seen = dict(heartbeats.last_seen)
            workers = {
                t: {"state": ("lost" if t in heartbeats.lost else "finished"
                              if t in heartbeats.finished else "alive"),
                    "last_seen_s_ago": round(time.monotonic() - seen[t], 1),
                    "trial": snap["running"].get(t)}
                for t in seen}
            assignments = {k: list(v) for k, v in heartbeats.assignments.items()}
        data = dict(state=state, oracle=cluster.oracle, workers=workers, lost=lost_log,
                    assignments=assignments, ended=dict(collections.Counter(snap["end_order"])),
                    held=sorted(orphans),
                    **{k: snap[k] for k in ("trials", "max_trials", "completed", "failed",
                                            "running", "queued", "status")})
        data.update(extra or {})
        write_json(status_path, data)
        return data

    try:
        last_write = 0.0
        while True:
            time.sleep(poll)
            now = time.monotonic()
            for tuner_id in heartbeats.silent(cluster.heartbeat_timeout):
                trial_id = reclaim(oracle, tuner_id, losses)
                with heartbeats.lock:
                    heartbeats.lost[tuner_id] = (time.time(), trial_id)
                event = {"tuner_id": tuner_id, "trial": trial_id, "at": time.time(),
                         "after_s": round(now - started, 1)}
                lost_log.append(event)
                _log(f"worker {tuner_id!r} sent no heartbeat for {cluster.heartbeat_timeout:g} s:"
                     f" declared lost" + (f"; its trial {trial_id} goes back to the queue"
                                          if trial_id else ""))
            alive = heartbeats.alive(cluster.heartbeat_timeout)
            snap = snapshot(oracle)
            if orphans and now - started > cluster.heartbeat_timeout:
                released = release_orphans(oracle, orphans)
                _log(f"no worker claimed trial(s) {', '.join(released)} (running when the "
                     "chief stopped): back in the queue")
            # KerasTuner's exit rule counts only the workers that asked for a trial; one that
            # connected (its heartbeat is live) but is still building its tuner would find the
            # chief gone and wait `rpc_timeout` for it: wait until it, too, has been told that
            # the search is over (or is declared lost)
            done = (servicer.stop_triggered and not snap["running"] and not snap["queued"]
                    and not orphans and not alive
                    and oracle_chief.exit_chief(oracle))
            if done:
                return status("done")
            if alive:
                no_worker_since = now
                state = "running"
            if expected and not warned_missing and now - started > cluster.worker_timeout:
                missing = sorted(set(expected) - set(heartbeats.last_seen))
                if missing and alive:
                    warned_missing = True
                    _log(f"expected worker(s) {', '.join(missing)} did not connect within "
                         f"{cluster.worker_timeout:g} s; going on with {', '.join(alive)}")
            if not alive and now - no_worker_since > cluster.worker_timeout:
                raise TuningClusterError(_give_up_message(cluster, heartbeats, expected, snap,
                                                          orphans, tuner.project_dir))
            if now - last_write > 2.0:
                status(state)
                last_write = now
    except TuningClusterError as exc:
        status("gave_up", {"error": str(exc)})
        _log(str(exc))
        raise
    finally:
        oracle.save()
        server.stop(grace=1.0)


def _give_up_message(cluster, heartbeats, expected, snap, orphans, project_dir):
    waited = f"{cluster.worker_timeout:g} s"
    with heartbeats.lock:
        seen = set(heartbeats.last_seen)
        lost = dict(heartbeats.lost)
        finished = set(heartbeats.finished)
    if not seen:
        if expected:
            who = f"missing: {', '.join(expected)}"
        elif isinstance(cluster.workers, int):
            who = f"expected {cluster.workers}"
        else:
            who = "none expected by name"
        return (f"no tuner worker connected to the chief at {cluster.oracle} within {waited} "
                f"({who}); start the workers with {cluster.oracle} as the oracle address")
    parts = []
    if lost:
        parts.append("lost: " + ", ".join(
            f"{t}" + (f" (with trial {trial})" if trial else "") for t, (_, trial) in
            sorted(lost.items())))
    if finished:
        parts.append(f"finished: {', '.join(sorted(finished))}")
    if expected:
        missing = sorted(set(expected) - seen)
        if missing:
            parts.append(f"never connected: {', '.join(missing)}")
    left = snap["queued"] + sorted(orphans) or list(snap["running"].values())
    todo = f"trial(s) {', '.join(left)} not run" if left else "the search is not finished"
    return (f"no live tuner worker for {waited} ({'; '.join(parts)}) and {todo}; start a "
            f"worker again to finish (the search state is saved in {project_dir}, a restarted "
            "chief resumes it)")
