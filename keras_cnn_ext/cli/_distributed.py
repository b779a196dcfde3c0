"""The distributed-search flags of `keras-cnn-ext tune` (KerasTuner's chief/worker mode)."""

from keras_cnn_ext.cli import UsageError, choice_error

ROLES = ("chief", "worker")

EPILOG = """\
distributed search (one chief, any number of workers; the same command and --output on a
shared file system everywhere, plus):
  keras-cnn-ext tune lenet5 --max-trials 20 --output /shared/tune/lenet \\
      --distributed chief --oracle 0.0.0.0:8000 --workers tuner0,tuner1
  keras-cnn-ext tune lenet5 --max-trials 20 --output /shared/tune/lenet \\
      --distributed worker --oracle chief-host:8000 --tuner-id tuner0
The chief runs no trial: it serves the oracle, then writes the results. Instead of the flags,
KerasTuner's variables KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT work
too. A worker silent for --heartbeat-timeout seconds is declared lost and its trial is run by
another; the chief gives up after --worker-timeout seconds without a live worker; a worker
gives up after --connect-timeout seconds without a chief. See docs/scaling-out.md.
"""


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_arguments(parser):
    group = parser.add_argument_group("distributed search")
    group.add_argument("--distributed", metavar="ROLE",
                       help="chief (serves the oracle) or worker (runs trials)")
    group.add_argument("--oracle", metavar="HOST:PORT",
                       help="where the chief listens / the workers connect")
    group.add_argument("--tuner-id", metavar="ID",
                       help="a worker's unique id (must not contain 'chief')")
    group.add_argument("--workers", metavar="IDS|N",
                       help="chief: the worker ids it expects (comma-separated) or their "
                            "number, named when they do not come")
    group.add_argument("--worker-timeout", type=_seconds, default=600.0, metavar="S",
                       help="chief: give up after S seconds without a live worker (600)")
    group.add_argument("--connect-timeout", type=_seconds, default=60.0, metavar="S",
                       help="worker: give up after S seconds without a chief (60)")
    group.add_argument("--heartbeat-timeout", type=_seconds, default=60.0, metavar="S",
                       help="a worker silent this long is declared lost (60)")


def tuning_cluster(args):
    """The `TuningCluster` of the flags (or of KerasTuner's variables), or None."""
    from keras_cnn_ext.distribute import tuning

    timeouts = dict(worker_timeout=args.worker_timeout, connect_timeout=args.connect_timeout,
                    heartbeat_timeout=args.heartbeat_timeout,
                    heartbeat_interval=min(2.0, args.heartbeat_timeout / 4))
    try:
        if args.distributed is None:
            if args.oracle or args.tuner_id or args.workers:
                raise UsageError("--oracle, --tuner-id and --workers go with --distributed "
                                 "chief|worker")
            return tuning.TuningCluster.from_env(**timeouts)
        role = args.distributed.lower()
        if role not in ROLES:
            raise choice_error("--distributed", args.distributed, ROLES)
        if not args.oracle:
            raise UsageError(f"--distributed {role} needs --oracle HOST:PORT")
        if role == "worker" and not args.tuner_id:
            raise UsageError("--distributed worker needs --tuner-id ID (unique per worker)")
        if role == "chief" and args.tuner_id and "chief" not in args.tuner_id:
            raise UsageError("--tuner-id is a worker's: the chief has none")
        return tuning.TuningCluster(role, args.oracle, tuner_id=args.tuner_id or "chief",
                                    workers=args.workers if role == "chief" else None,
                                    **timeouts)
    except ValueError as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(str(exc)) from None


def accounting_lines(accounting):
    """The chief's account of a distributed search, for the terminal."""
    by_worker = {}
    for trial, who in sorted(accounting["assignments"].items()):
        for tuner_id in who:
            by_worker.setdefault(tuner_id, []).append(trial)
    ended = accounting["ended"]
    once = all(n == 1 for n in ended.values())
    lines = [f"Distributed search: {len(ended)} trial(s) ended"
             + (" once each" if once else f" ({ended})")]
    for tuner_id, trials in sorted(by_worker.items()):
        lines.append(f"  {tuner_id}: ran {', '.join(trials)}")
    for event in accounting["lost"]:
        lines.append(f"  lost {event['tuner_id']}" + (
            f" (its trial {event['trial']} went to another worker)" if event["trial"] else ""))
    return "\n".join(lines)
