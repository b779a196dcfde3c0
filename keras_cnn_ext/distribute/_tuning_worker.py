"""A worker of a distributed search: checks that the chief answers, keeps a heartbeat going,
and runs KerasTuner's own `Tuner.search` with its requests bounded in time."""

import os
import sys
import threading
import time

from keras_cnn_ext.distribute._tuning_common import _HEARTBEAT, LOST_EXIT_CODE, TuningClusterError


def _log(tuner_id, message):
    stamp = time.strftime("%H:%M:%S")
    print(f"[keras-cnn-ext tune worker {tuner_id} {stamp}] {message}", file=sys.stderr,
          flush=True)


class _HeartbeatThread(threading.Thread):
    """Pings the chief every `interval` seconds. Told that this worker was declared lost (it
    was silent too long and its trial went to another worker), it ends the process: going on
    would run that trial twice. Each ping names the trial running here, so that a chief that
    was restarted (and put its in-flight trials back in the queue) gives it back to this
    worker instead of running it twice."""

    def __init__(self, beat, cluster):
        super().__init__(name="kce-tuner-heartbeat", daemon=True)
        self.beat = beat
        self.cluster = cluster
        self.stopped = threading.Event()
        self.trial_id = None

    def run(self):
        import grpc

        failing = False
        tuner_id = self.cluster.tuner_id
        while not self.stopped.wait(self.cluster.heartbeat_interval):
            try:
                reply = self.beat(_payload(tuner_id, self.trial_id),
                                  timeout=self.cluster.heartbeat_interval * 2)
            except grpc.RpcError as exc:
                if not failing and not self.stopped.is_set():
                    _log(tuner_id, f"the chief at {self.cluster.oracle} does not answer "
                                   f"({exc.code().name}); still trying")
                failing = True
                continue
            if failing:
                _log(tuner_id, "the chief answers again")
                failing = False
            if reply == b"lost" and not self.stopped.is_set():
                _log(tuner_id, "the chief declared this worker lost and gave its trial to "
                               "another worker; exiting (restart the worker to rejoin)")
                os._exit(LOST_EXIT_CODE)


def _payload(tuner_id, trial_id):
    return f"{tuner_id}\n{trial_id or ''}".encode()


def channel_options(cluster):
    # gRPC backs off up to 2 minutes between reconnection attempts after failures; a worker
    # must notice a restarted chief within a heartbeat or two.
    backoff_ms = int(cluster.heartbeat_interval * 1000)
    return [("grpc.initial_reconnect_backoff_ms", backoff_ms),
            ("grpc.min_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_reconnect_backoff_ms", backoff_ms)]


def _connect(cluster):
    import grpc

    channel = grpc.insecure_channel(cluster.oracle, options=channel_options(cluster))
    beat = channel.unary_unary(_HEARTBEAT)
    try:
        reply = beat(_payload(cluster.tuner_id, None), timeout=cluster.connect_timeout,
                     wait_for_ready=True)
    except grpc.RpcError as exc:
        channel.close()
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise TuningClusterError(
                f"the server at {cluster.oracle} is not a keras-cnn-ext tuning chief (it has "
                "no heartbeat service); start the chief with keras-cnn-ext or "
                "keras_cnn_ext.distribute.tuning.run_distributed") from None
        raise TuningClusterError(
            f"no tuning chief answered at {cluster.oracle} within "
            f"{cluster.connect_timeout:g} s ({exc.code().name}); start the chief first, or "
            "check the oracle address (KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT)"
        ) from None
    if reply == b"lost":
        channel.close()
        raise TuningClusterError(
            f"the chief at {cluster.oracle} declared tuner {cluster.tuner_id!r} lost earlier "
            "in this search; start the worker with another tuner id to join it")
    return channel, beat


def run_worker(cluster, make_tuner, search_args, search_kwargs):
    """Joins the search of the chief at `cluster.oracle`; returns the trials this worker ran."""
    import grpc

    channel, beat = _connect(cluster)
    heartbeat = _HeartbeatThread(beat, cluster)
    heartbeat.start()
    from keras_tuner.src.distribute import oracle_client

    saved_timeout = oracle_client.TIMEOUT
    # KerasTuner waits an hour per request (its module constant, read at each call).
    oracle_client.TIMEOUT = cluster.rpc_timeout
    ran = []
    try:
        tuner = make_tuner()
        if not isinstance(tuner.oracle, oracle_client.OracleClient):
            raise TuningClusterError(
                "the tuner built on this worker does not talk to the chief; build it inside "
                "run_distributed (KerasTuner reads its environment variables in the tuner's "
                "constructor)")
        from keras_tuner.src import protos

        # KerasTuner's requests on a channel with the same short reconnection backoff
        tuner.oracle.stub = protos.get_service_grpc().OracleStub(
            grpc.insecure_channel(cluster.oracle, options=channel_options(cluster)))
        on_trial_begin, on_trial_end = tuner.on_trial_begin, tuner.on_trial_end

        def trial_begins(trial):
            ran.append(trial.trial_id)
            heartbeat.trial_id = trial.trial_id
            return on_trial_begin(trial)

        def trial_ends(trial):
            result = on_trial_end(trial)
            heartbeat.trial_id = None
            return result

        tuner.on_trial_begin, tuner.on_trial_end = trial_begins, trial_ends
        tuner.search(*search_args, **search_kwargs)
    except grpc.RpcError as exc:
        raise TuningClusterError(
            f"the chief at {cluster.oracle} stopped answering worker {cluster.tuner_id!r} "
            f"({exc.code().name}: {exc.details()})") from None
    finally:
        oracle_client.TIMEOUT = saved_timeout
        heartbeat.stopped.set()
        heartbeat.join(timeout=cluster.heartbeat_interval * 3)
        channel.close()
    return {"role": "worker", "tuner_id": cluster.tuner_id, "trials": ran}
