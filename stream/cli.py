"""`fraudstream`: one command line, one thin subcommand per job.

Each subcommand parses its flags and calls one plain function that tests call directly.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudstream.features.transaction import InvalidTransaction
from fraudstream.models.registry import RegistryError, load_version
from fraudstream.models.signing import SigningKey, SigningKeyError, key_file_for, signing_key_for
from fraudstream.models.tree_search import TreeSearch
from fraudstream.stream.offline.evaluation import (
    NoHeldOutTransactions,
    evaluate_from_file,
    format_report,
)
from fraudstream.stream.offline.importer import (
    ImportOptions,
    ImportRefused,
    import_transactions,
    parse_column_map,
)
from fraudstream.stream.offline.prequential import evaluate_prequential, format_prequential_report
from fraudstream.stream.offline.protocol import ProtocolError
from fraudstream.stream.offline.rules_backtest import backtest_from_file
from fraudstream.stream.offline.training import DEFAULT_SEARCH, SEARCH_CHOICES, train_from_file
from fraudstream.stream.served_features import trained_label_delay_s
from fraudstream.stream.settings import Settings, SettingsError
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.rejected import RejectedRecords, rejected_path_for
from fraudstream.stream.sim.streamfile import write_stream
from fraudstream.stream.tools.capacity_inputs import add_capacity_arguments
from fraudstream.stream.tools.loadtest import add_loadtest_arguments
from fraudstream.stream.tools.services import embedded_services, kafka_bootstrap
from fraudstream.thresholds.rules import RulesError, load_rules
from fraudstream.thresholds.rules.backtest import format_backtest

#: The prequential protocol's defaults, the Handbook's: four folds of a week.
PREQUENTIAL_FOLDS = 4
PREQUENTIAL_FOLD_DAYS = 7

if TYPE_CHECKING:  # the demo module imports the Kafka client: loaded only when run
    from fraudstream.stream.tools.demo import DemoOptions


def write_generated_stream(config: GeneratorConfig, out: Path) -> str:
    """Generate a stream, write it and its labels beside `out`; returns what was written."""
    started = time.perf_counter()
    stream = generate_stream(config)
    labels_file = write_stream(stream, out)
    frauds = sum(label.is_fraud for label in stream.labels)
    return (
        f"wrote {len(stream.transactions):,} transactions to {out} and their labels to "
        f"{labels_file} ({frauds:,} frauds, {frauds / len(stream.labels):.2%}) "
        f"in {time.perf_counter() - started:.1f}s"
    )


def _generate(args: argparse.Namespace) -> int:
    config = GeneratorConfig(
        transactions=args.transactions,
        seed=args.seed,
        fraud_rate=args.fraud_rate,
        days=args.days,
        drift_at=args.drift_at,
    )
    print(write_generated_stream(config, args.out))
    return 0


def _registry(args: argparse.Namespace) -> Path:
    """`--registry` when given, else FRAUDSTREAM_REGISTRY: the folder the workers read."""
    return args.registry if args.registry is not None else Settings.from_env().registry_path


def _training_key(settings: Settings, registry: Path) -> SigningKey:
    """FRAUDSTREAM_SIGNING_KEY, else the key file beside `registry` (made if need be), said."""
    if settings.signing_key is None:
        print(f"FRAUDSTREAM_SIGNING_KEY is not set: signing with the key in "
              f"{key_file_for(registry)}; give its content to workers as "
              "FRAUDSTREAM_SIGNING_KEY", flush=True)  # fmt: skip
    return signing_key_for(registry, settings.signing_key, create=True)


def _setting_aside(
    command: str, run: Callable[[argparse.Namespace, RejectedRecords], int], beside: str = "data"
) -> Callable[[argparse.Namespace], int]:
    """`run` reading forgivingly: records that break the contract go to
    `<stem>.rejected.jsonl` beside the file of option `beside` (`--data`, or `--out` for
    import), their count to stderr; `--strict` stops at the first. A file that cannot be
    used at all is one line on stderr and status 1, never a traceback.
    """

    def command_run(args: argparse.Namespace) -> int:
        rejects = RejectedRecords(rejected_path_for(getattr(args, beside)), strict=args.strict)
        try:
            with rejects:
                status = run(args, rejects)
        except (InvalidTransaction, ImportRefused, OSError) as error:
            print(f"fraudstream {command}: {error}", file=sys.stderr)
            return 1
        if rejects.count:
            print(rejects.summary(), file=sys.stderr)
        return status

    return command_run


def _add_strict_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict", action="store_true",
        help="stop at the first record that breaks the contract (default: skip it, with "
             "the reason, into <stem>.rejected.jsonl beside --data, or --out for import, "
             "and go on)",
    )  # fmt: skip


def _train(args: argparse.Namespace, rejects: RejectedRecords) -> int:
    settings = Settings.from_env()
    registry = _registry(args)
    version = train_from_file(
        args.data, registry, settings.cost_model, settings.selection_constraints,
        since=args.since, signing_key=_training_key(settings, registry), rejects=rejects,
        label_delay_s=settings.label_delay_s, search=args.search,
    )  # fmt: skip
    _print_registered(registry, version)
    return 0


def _print_registered(registry: Path, version: str) -> None:
    """Say what was registered, with the tree settings each XGBoost candidate had."""
    metadata = load_version(registry, version).metadata
    search = TreeSearch.from_json(metadata["tree_search"])
    print(f"xgboost tree settings tried ({metadata['tree_search_grid']} search), "
          "* kept for the best validation average precision:")  # fmt: skip
    for line in search.report():
        print(f"  {line}")
    print(f"registered model {version} in {registry} (now live)")


def _import(args: argparse.Namespace, rejects: RejectedRecords) -> int:
    options = ImportOptions(
        columns=args.map, time_format=args.time_format, label_delay_days=args.label_delay_days,
        currency=args.currency, country=args.country, channel=args.channel,
        delimiter=args.delimiter, encoding=args.encoding,
    )  # fmt: skip
    print(import_transactions(args.source, args.out, options, rejects).summary())
    return 0


def _column_map(text: str) -> dict[str, str]:
    try:
        return parse_column_map(text)
    except ImportRefused as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _evaluate(args: argparse.Namespace, rejects: RejectedRecords) -> int:
    if args.protocol == "split" and (args.folds, args.fold_days) != (None, None):
        print("fraudstream evaluate: --folds and --fold-days are for --protocol prequential",
              file=sys.stderr)  # fmt: skip
        return 2
    settings = Settings.from_env()
    try:
        if args.protocol == "prequential":
            report = evaluate_prequential(
                args.data, args.folds or PREQUENTIAL_FOLDS, args.fold_days or PREQUENTIAL_FOLD_DAYS,
                settings.cost_model, settings.threshold_constraints,
                settings.selection_constraints, settings.label_delay_days, rejects,
            )  # fmt: skip
            text = format_prequential_report(report)
        else:
            report = evaluate_from_file(
                args.data, _registry(args), settings.cost_model, settings.threshold_constraints,
                settings.label_delay_days, rejects,
            )  # fmt: skip
            text = format_report(report)
    except (NoHeldOutTransactions, ProtocolError, RegistryError) as error:
        print(f"fraudstream evaluate: {error}", file=sys.stderr)
        return 1
    _print_report(text, report, args.json)
    return 0


def _print_report(text: str, report: dict[str, Any], json_file: Path | None) -> None:
    print(text)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {json_file}")


def _demo(args: argparse.Namespace) -> int:
    if args.offline:
        return _offline_demo(args)
    from fraudstream.stream.tools.demo import run_demo

    try:
        run_demo(Settings.from_env(), demo_options(args))
    except (RegistryError, SigningKeyError) as error:
        print(f"fraudstream demo: {error}", file=sys.stderr)
        return 1
    return 0


def demo_options(args: argparse.Namespace) -> DemoOptions:
    """The streaming demo's options; without --seed, the scenario's own replay seed."""
    from fraudstream.stream.tools.demo import DRIFT_SEED, DemoOptions

    if args.seed is not None:
        seed = args.seed
    else:
        seed = DRIFT_SEED if args.scenario == "drift" else DemoOptions.seed
    return DemoOptions(transactions=args.transactions, rate=args.rate, out=args.out,
                       workers=args.workers, scenario=args.scenario, shadow_version=args.shadow,
                       seed=seed, partitions=args.partitions)  # fmt: skip


def _offline_demo(args: argparse.Namespace) -> int:
    """Offline demo: generate, train, evaluate, in a run folder."""
    settings = Settings.from_env()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "transactions.jsonl"
    registry = out / "registry"
    print(f"[1/3] generating {args.transactions:,} transactions", flush=True)
    seed = GeneratorConfig.seed if args.seed is None else args.seed
    print(write_generated_stream(GeneratorConfig(args.transactions, seed=seed), data))
    print("[2/3] training XGBoost + IsolationForest on the earliest half", flush=True)
    version = train_from_file(data, registry, settings.cost_model, settings.selection_constraints,
                              signing_key=_training_key(settings, registry),
                              label_delay_s=settings.label_delay_s)  # fmt: skip
    _print_registered(registry, version)
    print(f"[3/3] evaluating from a {settings.label_delay_days:g}-day label delay after the "
          "validation split to the end\n", flush=True)  # fmt: skip
    report = evaluate_from_file(
        data, registry, settings.cost_model, settings.threshold_constraints,
        settings.label_delay_days,
    )  # fmt: skip
    _print_report(format_report(report), report, out / "evaluation.json")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from fraudstream.stream.worker.app import run_worker

    settings = Settings.from_env()
    if settings.kafka_url is None or settings.redis_url is None:
        print(
            "fraudstream worker needs FRAUDSTREAM_KAFKA_URL and FRAUDSTREAM_REDIS_URL; "
            "run `fraudstream services` for an embedded pair",
            file=sys.stderr,
        )
        return 2
    try:
        settings.id_pseudonyms()
    except SettingsError as error:
        print(f"fraudstream worker refuses to start: {error}", file=sys.stderr)
        return 2
    if settings.signing_key is None:
        print(
            "fraudstream worker needs FRAUDSTREAM_SIGNING_KEY, the key its model registry "
            "and the shared threshold are signed with (`fraudstream train` without it keeps "
            f"one in {key_file_for(settings.registry_path)})",
            file=sys.stderr,
        )
        return 2
    try:
        live = load_version(settings.registry_path, signing_key=settings.signing_key)
        trained_label_delay_s(live, settings.registry_path)  # today's features?
    except RegistryError as error:
        print(f"fraudstream worker: {error}", file=sys.stderr)
        return 2
    run_worker(
        settings,
        settings.kafka_url,
        settings.redis_url,
        datadir=args.datadir,
        status_file=args.status_file,
        session_timeout_s=args.session_timeout,
    )
    return 0


def _replay(args: argparse.Namespace, rejects: RejectedRecords) -> int:
    from fraudstream.stream.sim.replay import replay
    from fraudstream.stream.sim.streamfile import read_stream_file

    settings = Settings.from_env()
    if settings.kafka_url is None:
        print("fraudstream replay needs FRAUDSTREAM_KAFKA_URL", file=sys.stderr)
        return 2
    transactions, labels = read_stream_file(args.data, rejects)
    report = replay(
        kafka_bootstrap(settings.kafka_url), transactions, labels,
        topic=settings.topic_transactions, labels_topic=settings.topic_labels,
        rate=args.rate if args.speedup is None else None, speedup=args.speedup,
        limit=args.limit, security=settings.kafka_security,
    )  # fmt: skip
    print(
        f"produced {report.produced:,} transactions and {report.labels_produced:,} labels "
        f"in {report.seconds:.1f}s: {report.achieved_tps:,.0f} transactions/s"
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    from fraudstream.models.registry import list_versions, live_version, rollback, set_live

    registry = _registry(args)
    try:
        if args.models_command == "promote":
            candidate = load_version(registry, args.version, signing_key=_checking_key(registry))
            trained_label_delay_s(candidate, registry)  # workers would refuse it
            set_live(registry, args.version)
            print(f"{args.version} is live; workers load it within a few seconds")
        elif args.models_command == "rollback":
            print(f"rolled back: {rollback(registry)} is live again")
        else:
            live = live_version(registry)
            for version in list_versions(registry):
                metadata = load_version(registry, version).metadata
                marker = "*" if version == live else " "
                cost = metadata.get("thresholds", {}).get("ensemble", {})
                trees = (TreeSearch.from_json(metadata["tree_search"]).summary()
                         if "tree_search" in metadata else "not searched")  # fmt: skip
                print(f"{marker} {version}  created {metadata.get('created_at', '?')}  "
                      f"validation cost/txn {cost.get('validation_cost_per_txn', float('nan')):.3f}"
                      f"  data {metadata.get('data', '?')}\n      xgboost {trees}")  # fmt: skip
    except RegistryError as error:
        print(f"fraudstream models: {error}", file=sys.stderr)
        return 1
    return 0


def _checking_key(registry: Path) -> SigningKey | None:
    """The key to check a version before promoting it; None (hashes only, said) if none.

    Promoting needs no secret: a worker refuses an unsigned version anyway and keeps serving.
    """
    try:
        return signing_key_for(registry, Settings.from_env().signing_key)
    except SigningKeyError as error:
        print(f"signature not checked: {error}", file=sys.stderr)
        return None


def _thresholds_show(args: argparse.Namespace) -> int:
    import asyncio

    from fraudstream.stream.worker.recalibration import describe_live_threshold
    from fraudstream.thresholds.shared import SharedThresholdError

    settings = Settings.from_env()
    if settings.redis_url is None:
        print("fraudstream thresholds show needs FRAUDSTREAM_REDIS_URL", file=sys.stderr)
        return 2
    try:
        key = signing_key_for(settings.registry_path, settings.signing_key)
        print(asyncio.run(describe_live_threshold(settings.redis_url, settings.app_id, key,
                                                  args.limit)))  # fmt: skip
    except (SigningKeyError, SharedThresholdError) as error:
        print(f"fraudstream thresholds show: {error}", file=sys.stderr)
        return 1
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    try:
        rule_set = load_rules(args.file)
    except RulesError as error:
        print(error, file=sys.stderr)
        return 1
    entries = sum(len(named.values) for named in rule_set.lists.values())
    print(f"{args.file}: valid, version {rule_set.version}: {len(rule_set.rules)} rules, "
          f"{len(rule_set.lists)} lists of {entries:,} entries "
          f"(block {len(rule_set.block)}, allow {len(rule_set.allow)})")  # fmt: skip
    return 0


def _rules_backtest(args: argparse.Namespace, rejects: RejectedRecords) -> int:
    try:
        settings = Settings.from_env()
        capacity = args.review_capacity
        if capacity is None:
            capacity = settings.review_capacity
        report = backtest_from_file(args.file, args.data, _registry(args), args.labels,
                                    settings.cost_model, capacity, rejects)  # fmt: skip
    except (RulesError, RegistryError) as error:
        print(f"fraudstream rules backtest: {error}", file=sys.stderr)
        return 1
    _print_report(format_backtest(report), report, args.json)
    return 0


def _share(text: str) -> float:
    try:
        share = float(text)
        if 0.0 <= share <= 1.0:
            return share
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a share in [0, 1] (0.01 is 1 %)")


def _tail(args: argparse.Namespace) -> int:
    from fraudstream.stream.tools.tail import TailOptions, tail_decisions

    settings = Settings.from_env()
    if settings.kafka_url is None:
        print("fraudstream tail needs FRAUDSTREAM_KAFKA_URL", file=sys.stderr)
        return 2
    if args.card and settings.id_hash_key is None:
        print("FRAUDSTREAM_ID_HASH_KEY is not set: --card matches pseudonymised card ids only",
              file=sys.stderr)  # fmt: skip
    options = TailOptions(
        outcomes=frozenset(args.decision), cards=tuple(args.card), as_json=args.json,
        from_beginning=args.from_beginning, max_lines=args.max,
        idle_timeout_s=args.idle_timeout,
    )  # fmt: skip
    tail_decisions(settings, options, lambda line: print(line, flush=True),
                   on_unreadable=lambda message: print(message, file=sys.stderr))  # fmt: skip
    return 0


def _explain(args: argparse.Namespace) -> int:
    from fraudstream.stream.tools.decision_sources import (
        DEFAULT_SEARCH_TIMEOUT_S,
        DecisionNotFound,
        sources_from_run,
        sources_from_topics,
    )
    from fraudstream.stream.tools.explain import explain_decision, format_explanation

    settings = Settings.from_env()
    registry = _registry(args)
    try:
        if args.run_dir is not None:
            sources = sources_from_run(args.run_dir, args.txn_id, settings, registry)
        else:
            timeout_s = DEFAULT_SEARCH_TIMEOUT_S if args.timeout is None else args.timeout
            sources = sources_from_topics(settings, args.txn_id, registry, timeout_s)
    except (DecisionNotFound, InvalidTransaction) as error:
        print(f"fraudstream explain: {error}", file=sys.stderr)
        return 1
    story = explain_decision(sources)
    print(json.dumps(story, indent=2) if args.json else format_explanation(story), end="\n")
    return 0


def _outcomes(text: str) -> list[str]:
    """`review,decline` as a list, each one of the contract's outcomes."""
    from fraudstream.stream.contract import OUTCOMES

    outcomes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [outcome for outcome in outcomes if outcome not in OUTCOMES]
    if unknown or not outcomes:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of {', '.join(OUTCOMES)}")
    return outcomes


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _services(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with embedded_services(settings) as urls:
        print(f"export FRAUDSTREAM_KAFKA_URL={urls.kafka_url}")
        print(f"export FRAUDSTREAM_REDIS_URL={urls.redis_url}")
        if settings.id_hash_key is None:  # workers refuse to start without one
            print(f"export FRAUDSTREAM_ID_HASH_KEY={settings.run_id_hash_key()}")
        # `fraudstream replay` sends a month of history in minutes: its event times are far
        # from the broker's clock, which a production worker refuses (± 1 day by default).
        print("export FRAUDSTREAM_MAX_EVENT_SKEW_S=0  # replayed history: no clock check")
        print("# services running; Ctrl-C stops them", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")
    return 0


def _epoch_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither epoch seconds nor a date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


REGISTRY_HELP = "model registry folder (default: FRAUDSTREAM_REGISTRY, else ./registry)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write a synthetic transaction stream")
    generate.add_argument("--transactions", type=int, default=50_000)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--fraud-rate", type=float, default=0.01)
    generate.add_argument("--days", type=float, default=60.0)
    generate.add_argument(
        "--drift-at",
        type=float,
        default=0.75,
        help="fraction of the span after which the novel fraud pattern appears",
    )
    generate.add_argument("--out", type=Path, required=True, help=".jsonl or .parquet")
    generate.set_defaults(run=_generate)

    train = commands.add_parser("train", help="train and register a model version")
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--registry", type=Path, default=None, help=REGISTRY_HELP)
    train.add_argument(
        "--since", type=_epoch_seconds, default=None,
        help="train on transactions from this time on (epoch seconds or YYYY-MM-DD), with "
             "only the labels known by the stream's last event",
    )  # fmt: skip
    train.add_argument(
        "--search", choices=SEARCH_CHOICES, default=DEFAULT_SEARCH,
        help="grid of XGBoost tree settings (depth, learning rate, max_bin or exact trees) "
             "tried and judged by validation average precision: quick (3, the default), "
             "full (18, minutes on 200,000 transactions) or none (depth 6, lr 0.1, 256 bins)",
    )  # fmt: skip
    _add_strict_argument(train)
    train.set_defaults(run=_setting_aside("train", _train))

    add_import_parser(commands)

    evaluate = commands.add_parser(
        "evaluate", help="score held-out data with every model (docs/evaluation.md)"
    )
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument(
        "--registry", type=Path, default=None, help=f"split protocol: {REGISTRY_HELP}"
    )
    evaluate.add_argument(
        "--protocol", choices=("split", "prequential"), default="split",
        help="split: the live version, tested one label delay (FRAUDSTREAM_LABEL_DELAY_DAYS) "
             "after its validation split; prequential: rolling folds, each trained afresh",
    )  # fmt: skip
    evaluate.add_argument(
        "--folds", type=_positive_int, default=None,
        help=f"prequential: test periods, back to back at the stream's end [{PREQUENTIAL_FOLDS}]",
    )  # fmt: skip
    evaluate.add_argument(
        "--fold-days", type=_positive_int, default=None,
        help=f"prequential: days each fold tests [{PREQUENTIAL_FOLD_DAYS}]",
    )  # fmt: skip
    evaluate.add_argument("--json", type=Path, default=None)
    _add_strict_argument(evaluate)
    evaluate.set_defaults(run=_setting_aside("evaluate", _evaluate))

    worker = commands.add_parser("worker", help="run one Faust worker (FRAUDSTREAM_* settings)")
    worker.add_argument("--datadir", type=Path, default=Path(".fraudstream-worker"))
    worker.add_argument("--status-file", type=Path, default=None)
    worker.add_argument("--session-timeout", type=float, default=6.0)
    worker.set_defaults(run=_worker)

    replay = commands.add_parser("replay", help="produce a stream file to the transactions topic")
    replay.add_argument("--data", type=Path, required=True, help=".jsonl, .csv or .parquet")
    replay.add_argument("--rate", type=float, default=1000.0, help="transactions per second")
    replay.add_argument("--speedup", type=float, default=None, help="compress event time by X")
    replay.add_argument("--limit", type=int, default=None)
    _add_strict_argument(replay)
    replay.set_defaults(run=_setting_aside("replay", _replay))

    loadtest = commands.add_parser("loadtest", help="drive the pipeline at steady rates")
    add_loadtest_arguments(loadtest)

    capacity = commands.add_parser("capacity", help="a capacity plan from measured figures")
    add_capacity_arguments(capacity)

    models = commands.add_parser("models", help="list, promote or roll back model versions")
    models.add_argument("--registry", type=Path, default=None, help=REGISTRY_HELP)
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_commands.add_parser("list", help="versions, * marks the live one")
    promote = models_commands.add_parser("promote", help="make a version live (hot reload)")
    promote.add_argument("version")
    models_commands.add_parser("rollback", help="make the previously live version live again")
    models.set_defaults(run=_models)

    thresholds = commands.add_parser("thresholds", help="the group's live threshold")
    thresholds_commands = thresholds.add_subparsers(dest="thresholds_command", required=True)
    show = thresholds_commands.add_parser("show", help="live version, history, cost at each")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(run=_thresholds_show)

    rules = commands.add_parser("rules", help="check or backtest a business rules file")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="validate a rules file (YAML or JSON)")
    check.add_argument("file", type=Path)
    check.set_defaults(run=_rules_check)
    backtest = rules_commands.add_parser("backtest", help="each rule's figures on history")
    backtest.add_argument("file", type=Path)
    backtest.add_argument("--data", type=Path, required=True, help=".jsonl, .csv or .parquet")
    backtest.add_argument(
        "--labels", type=Path, default=None,
        help="labels JSONL (default: <stem>.labels.jsonl beside --data, else its is_fraud "
             "records)",
    )  # fmt: skip
    backtest.add_argument("--registry", type=Path, default=None, help=REGISTRY_HELP)
    backtest.add_argument(
        "--review-capacity", type=_share, default=None,
        help="share of transactions a rule may send to review, unless it sets its own "
             "(default: FRAUDSTREAM_REVIEW_CAPACITY)",
    )  # fmt: skip
    backtest.add_argument("--json", type=Path, default=None)
    _add_strict_argument(backtest)
    backtest.set_defaults(run=_setting_aside("rules backtest", _rules_backtest))

    tail = commands.add_parser("tail", help="follow the decisions topic, one line per decision")
    tail.add_argument(
        "--decision", type=_outcomes, default=[], metavar="OUTCOMES",
        help="only these outcomes, comma-separated: approve, review, decline (default: all)",
    )  # fmt: skip
    tail.add_argument(
        "--card", action="append", default=[], metavar="ID",
        help="only this card (raw id, matched through its pseudonym, or the pseudonym "
             "itself); repeatable",
    )  # fmt: skip
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument(
        "--from-beginning", action="store_true",
        help="read the topic from its start (default: only decisions made from now on)",
    )  # fmt: skip
    tail.add_argument("--max", type=_positive_int, default=None, metavar="N",
                      help="stop after N lines")  # fmt: skip
    tail.add_argument(
        "--idle-timeout", type=float, default=None, metavar="SECONDS",
        help="stop when no decision arrives for this long (default: follow until Ctrl-C)",
    )  # fmt: skip
    tail.set_defaults(run=_tail)

    explain = commands.add_parser("explain", help="walk through one decision, stage by stage")
    explain.add_argument("txn_id")
    explain.add_argument(
        "--run", type=Path, default=None, metavar="DIR", dest="run_dir",
        help="a `fraudstream demo --out DIR` run folder (default: search the decisions and "
             "transactions topics of FRAUDSTREAM_KAFKA_URL from their beginning)",
    )  # fmt: skip
    explain.add_argument("--registry", type=Path, default=None, help=REGISTRY_HELP)
    explain.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS",
        help="longest search of the topics without --run (default: 30)",
    )  # fmt: skip
    explain.add_argument("--json", action="store_true", help="the walk-through as JSON")
    explain.set_defaults(run=_explain)

    services = commands.add_parser("services", help="run the embedded broker and Redis")
    services.set_defaults(run=_services)

    demo = commands.add_parser("demo", help="the whole system on embedded services")
    demo.add_argument("--transactions", type=int, default=50_000)
    demo.add_argument("--rate", type=float, default=500.0, help="transactions per second")
    demo.add_argument("--workers", type=int, default=1)
    demo.add_argument(
        "--partitions", type=int, default=None,
        help="per topic (default: one per worker on the embedded broker)",
    )  # fmt: skip
    demo.add_argument(
        "--seed", type=int, default=None,
        help="stream seed (default: 7 offline, 2026 steady, 2027 drift)",
    )  # fmt: skip
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument(
        "--scenario", choices=("steady", "drift"), default="steady",
        help="drift: compare static and dynamic thresholds across the drift point",
    )  # fmt: skip
    demo.add_argument("--shadow", default=None, help="registry version to score in shadow")
    demo.add_argument(
        "--offline", action="store_true", help="generate, train and evaluate only (no Kafka)"
    )
    demo.set_defaults(run=_demo)
    return parser


def add_import_parser(commands: Any) -> None:
    """`fraudstream import`: its options and their defaults (stream/offline/importer.py)."""
    defaults = ImportOptions  # the dataclass's field defaults, read as class attributes
    parser = commands.add_parser(
        "import", help="turn your CSV or Parquet into a stream file and its labels"
    )
    parser.add_argument("source", type=Path, help=".csv or .parquet")
    parser.add_argument(
        "--map", type=_column_map, required=True, metavar="FIELD=COLUMN,...",
        help="the source column of each contract field: card_id, merchant_id, amount and "
             "event_time required; txn_id, currency, country, channel, lat, lon, is_fraud, "
             "scenario, label_time optional",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, required=True,
        help="the stream file (.jsonl); labels go beside it as <stem>.labels.jsonl, rows "
             "that cannot be imported to <stem>.rejected.jsonl",
    )  # fmt: skip
    parser.add_argument(
        "--time-format", default=defaults.time_format,
        help="auto (ISO 8601 or epoch seconds; the default), iso, epoch, epoch_ms, or a "
             "strptime format such as '%%d/%%m/%%Y %%H:%%M'; times without a zone are UTC",
    )  # fmt: skip
    parser.add_argument(
        "--label-delay-days", type=float, default=defaults.label_delay_days,
        help="label_time is the event time plus this when label_time is not mapped (7)",
    )  # fmt: skip
    parser.add_argument("--currency", default=defaults.currency,
                        help="where unmapped or empty (USD)")  # fmt: skip
    parser.add_argument("--country", default=defaults.country,
                        help="where unmapped or empty (US)")  # fmt: skip
    parser.add_argument("--channel", default=defaults.channel,
                        help="pos, ecom or atm, where unmapped or empty (pos)")  # fmt: skip
    parser.add_argument("--delimiter", default=defaults.delimiter, help="of the CSV (,)")
    parser.add_argument("--encoding", default=defaults.encoding,
                        help="of the CSV (utf-8, with or without a byte-order mark)")  # fmt: skip
    _add_strict_argument(parser)
    parser.set_defaults(run=_setting_aside("import", _import, beside="out"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
