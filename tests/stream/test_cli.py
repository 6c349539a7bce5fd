"""The command line: subcommands honour their flags and the FRAUDSTREAM_* settings.

One small stream (8,000 transactions) and one registry trained on it with the default
costs are shared by the module; tests that need other settings train into their own
registry.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudstream.features.pseudonyms import new_id_hash_key
from fraudstream.models.registry import RegistryError, list_versions, load_version, verify_version
from fraudstream.models.signing import SigningKey, key_file_for, signing_key_for
from fraudstream.stream import cli
from fraudstream.stream.cli import build_parser, main
from fraudstream.stream.offline import evaluation
from fraudstream.stream.offline.evaluation import evaluate_from_file
from fraudstream.stream.sim.generator import SyntheticStream
from fraudstream.stream.sim.streamfile import labels_path_for, read_stream_file, write_stream
from fraudstream.stream.tools import demo
from fraudstream.stream.tools.demo import DRIFT_SEED, DemoOptions
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints
from fraudstream.thresholds.rules import DEFAULT_RULES_FILE

SMALL_STREAM = ["--transactions", "8000", "--seed", "3"]
#: Costs far from the defaults (5000, 50, 10), so the chosen thresholds move.
OTHER_COSTS = {
    "FRAUDSTREAM_COST_FN": "300",
    "FRAUDSTREAM_COST_FP": "5",
    "FRAUDSTREAM_COST_REVIEW": "2",
    "FRAUDSTREAM_MAX_FPR": "0.02",
}


@pytest.fixture(autouse=True)
def no_fraudstream_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the FRAUDSTREAM_* variables they mean; none leak in from the shell."""
    for name in [name for name in os.environ if name.startswith("FRAUDSTREAM_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "transactions.jsonl"
    assert main(["generate", *SMALL_STREAM, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def default_registry(stream_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    registry = tmp_path_factory.mktemp("default") / "registry"
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("FRAUDSTREAM_")]:
            patch.delenv(name)
        assert main(["train", "--data", str(stream_file), "--registry", str(registry)]) == 0
    yield registry


def test_offline_demo_generates_trains_and_evaluates(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--offline", "--transactions", "8000", "--out", str(out)]) == 0
    assert list_versions(out / "registry") == ["v0001"]
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["models"]) == {"xgboost", "isolation_forest", "ensemble", "rules"}


def test_train_and_evaluate_default_to_the_FRAUDSTREAM_REGISTRY_folder(
    stream_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = tmp_path / "from-environment"
    monkeypatch.setenv("FRAUDSTREAM_REGISTRY", str(registry))
    assert main(["train", "--data", str(stream_file)]) == 0
    assert list_versions(registry) == ["v0001"]
    assert not (tmp_path / "registry").exists()
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", "--data", str(stream_file), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model_version"] == "v0001"


def test_models_commands_default_to_the_FRAUDSTREAM_REGISTRY_folder(
    default_registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = tmp_path / "from-environment"
    shutil.copytree(default_registry, registry)
    monkeypatch.setenv("FRAUDSTREAM_REGISTRY", str(registry))
    assert main(["models", "promote", "v0001"]) == 0
    assert main(["models", "list"]) == 0
    assert "* v0001" in capsys.readouterr().out
    # The flag still wins over the environment.
    assert main(["models", "--registry", str(tmp_path / "empty"), "promote", "v0001"]) == 1


def test_train_without_a_key_signs_with_a_key_file_beside_the_registry(
    default_registry: Path,
) -> None:
    key = signing_key_for(default_registry, None)
    assert key_file_for(default_registry).parent == default_registry.parent
    assert verify_version(default_registry, signing_key=key) == "v0001"
    with pytest.raises(RegistryError, match="signature does not match"):
        verify_version(default_registry, signing_key=SigningKey.generate())


def test_worker_refuses_to_start_without_the_signing_key_or_with_another(
    default_registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_URL", "kafka://127.0.0.1:9")
    monkeypatch.setenv("FRAUDSTREAM_REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("FRAUDSTREAM_REGISTRY", str(default_registry))
    monkeypatch.setenv("FRAUDSTREAM_ID_HASH_KEY", new_id_hash_key())
    assert main(["worker"]) == 2
    assert "fraudstream worker needs FRAUDSTREAM_SIGNING_KEY" in capsys.readouterr().err
    monkeypatch.setenv("FRAUDSTREAM_SIGNING_KEY", SigningKey.generate().secret)
    assert main(["worker"]) == 2
    assert "signature does not match version v0001" in capsys.readouterr().err


def test_promote_refuses_a_version_its_key_did_not_sign(
    default_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    registry = tmp_path / "registry"
    shutil.copytree(default_registry, registry)
    shutil.copytree(registry / "v0001", registry / "v0002")  # its manifest names v0001
    monkeypatch.setenv("FRAUDSTREAM_SIGNING_KEY", signing_key_for(default_registry, None).secret)
    assert main(["models", "--registry", str(registry), "promote", "v0002"]) == 1
    assert "signature does not match version v0002" in capsys.readouterr().err
    assert main(["models", "--registry", str(registry), "promote", "v0001"]) == 0


def test_train_and_evaluate_use_the_FRAUDSTREAM_COST_variables(
    stream_file: Path, default_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in OTHER_COSTS.items():
        monkeypatch.setenv(name, value)
    registry = tmp_path / "registry"
    assert main(["train", "--data", str(stream_file), "--registry", str(registry)]) == 0
    metadata = load_version(registry).metadata
    costs = CostModel(cost_fn=300.0, cost_fp=5.0, cost_review=2.0)
    assert metadata["cost_model"] == vars(costs)
    assert metadata["constraints"]["max_fpr"] == 0.01  # the pair leaves half the cap free
    assert metadata["thresholds"] != load_version(default_registry).metadata["thresholds"]

    out = tmp_path / "evaluation.json"
    argv = ["evaluate", "--data", str(stream_file), "--registry", str(registry)]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    limits = Constraints(max_fpr=0.02, max_review_rate=0.02)  # evaluated at the full limits
    expected = evaluate_from_file(stream_file, registry, costs, limits)
    assert report["models"] == expected["models"]
    other_costs = evaluate_from_file(stream_file, registry, CostModel(), limits)
    assert report["models"] != other_costs["models"]


def test_demo_seed_flag_reaches_the_streaming_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[DemoOptions] = []
    monkeypatch.setattr(demo, "run_demo", lambda _settings, options: received.append(options))
    assert main(["demo", "--seed", "5", "--transactions", "100"]) == 0
    assert [options.seed for options in received] == [5]


@pytest.mark.parametrize(
    ("argv", "seed"),
    [
        (["demo"], DemoOptions.seed),
        (["demo", "--scenario", "drift"], DRIFT_SEED),
        (["demo", "--seed", "11"], 11),
        (["demo", "--scenario", "drift", "--seed", "11"], 11),
    ],
)
def test_demo_options_take_the_seed_flag_or_the_scenario_default(
    argv: list[str], seed: int
) -> None:
    assert cli.demo_options(build_parser().parse_args(argv)).seed == seed


def test_evaluate_refuses_a_stream_that_ends_before_the_validation_split(
    stream_file: Path,
    default_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    valid_end = load_version(default_registry).metadata["split"]["valid_end"]
    transactions, labels = read_stream_file(stream_file)
    early = [txn for txn in transactions if txn.event_time < valid_end]
    kept = {txn.txn_id for txn in early}
    short = tmp_path / "short.jsonl"
    write_stream(
        SyntheticStream(early, [label for label in labels if label.txn_id in kept], 0.0), short
    )
    assert main(["evaluate", "--data", str(short), "--registry", str(default_registry)]) == 1
    error = capsys.readouterr().err
    assert "no labelled transactions" in error
    assert "one label delay (7 days, FRAUDSTREAM_LABEL_DELAY_DAYS) after the validation" in error
    assert "give a longer stream" in error
    with pytest.raises(evaluation.NoHeldOutTransactions, match="after the validation split"):
        evaluate_from_file(short, default_registry, CostModel())


def test_offline_commands_skip_records_that_break_the_contract_and_strict_stops_at_the_first(
    stream_file: Path, default_registry: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    data = tmp_path / "published.jsonl"
    lines = stream_file.read_bytes().splitlines(keepends=True)
    negative = {**json.loads(lines[0]), "txn_id": "negative", "amount": -1.0}
    data.write_bytes(b"".join([*lines[:100], json.dumps(negative).encode() + b"\n",
                               b'{"txn_id": "cut", "amo\n', *lines[100:]]))  # fmt: skip
    ghost = {"txn_id": "ghost", "is_fraud": True, "scenario": "x", "label_time": 1.8e9}
    labels_path_for(data).write_text(
        labels_path_for(stream_file).read_text() + json.dumps(ghost) + "\n"
    )
    rejected = tmp_path / "published.rejected.jsonl"
    assert main(["train", "--data", str(data), "--registry", str(tmp_path / "registry")]) == 0
    assert f"skipped 3 records that break the contract; each is in {rejected}" in (
        capsys.readouterr().err)  # fmt: skip
    rejections = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejections] == [
        (str(data), 101), (str(data), 102), (str(labels_path_for(data)), len(lines) + 1)]
    assert main(["evaluate", "--data", str(data), "--registry", str(default_registry)]) == 0
    assert "skipped 3 records" in capsys.readouterr().err
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_URL", "kafka://127.0.0.1:9")
    for command in (["train", "--registry", str(tmp_path / "strict")],
                    ["evaluate", "--registry", str(default_registry)], ["replay"],
                    ["rules", "backtest", str(DEFAULT_RULES_FILE), "--registry",
                     str(default_registry)]):  # fmt: skip
        assert main([*command, "--data", str(data), "--strict"]) == 1
        name = " ".join(command[:2] if command[0] == "rules" else command[:1])
        assert capsys.readouterr().err == (
            f"fraudstream {name}: {data}:101: field 'amount' must be in [0, 1e+06], got -1.0\n"
        )
    assert not (tmp_path / "strict").exists()


def test_a_data_file_that_cannot_be_read_is_one_line_not_a_traceback(
    default_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert main(["train", "--data", str(empty), "--registry", str(tmp_path / "r")]) == 1
    assert capsys.readouterr().err == (
        f"fraudstream train: {empty} holds no transaction (is it empty?)\n"
    )
    missing = tmp_path / "missing.jsonl"
    assert main(["evaluate", "--data", str(missing), "--registry", str(default_registry)]) == 1
    assert "fraudstream evaluate: [Errno 2] No such file or directory" in capsys.readouterr().err


def test_a_worker_pointed_at_services_refuses_to_start_without_the_id_hash_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_URL", "kafka://127.0.0.1:1")
    monkeypatch.setenv("FRAUDSTREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["worker"]) == 2
    error = capsys.readouterr().err
    assert "refuses to start: FRAUDSTREAM_ID_HASH_KEY is not set" in error
    assert "secrets.token_urlsafe" in error  # and says how to make one


def test_rules_check_accepts_the_shipped_file_and_says_why_it_refuses_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "check", str(DEFAULT_RULES_FILE)]) == 0
    assert capsys.readouterr().out.startswith(f"{DEFAULT_RULES_FILE}: valid, version ")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: a\n    when: amount > 1\n    action: refuse\n")
    assert main(["rules", "check", str(bad)]) == 1
    assert capsys.readouterr().err == (
        f"{bad}:4: rule 'a': action 'refuse' is not one of allow, review, decline\n"
    )
    assert main(["rules", "check", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: cannot read the rules file" in capsys.readouterr().err


BACKTEST_RULES = """\
rules:
  - {id: large, when: amount > 500, action: review}
  - {id: web, when: "channel == 'ecom' and amount < 1", action: decline, priority: 1}
"""


def test_rules_backtest_reports_each_rule_on_the_history(
    stream_file: Path, default_registry: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rules = tmp_path / "rules.yaml"
    rules.write_text(BACKTEST_RULES)
    out = tmp_path / "backtest.json"

    def backtest(data: Path, *extra: str) -> int:
        return main(["rules", "backtest", str(rules), "--data", str(data), "--registry",
                     str(default_registry), "--review-capacity", "0.01", "--json", str(out),
                     *extra])  # fmt: skip

    assert backtest(stream_file) == 0
    report = json.loads(out.read_text())
    transactions, labels = read_stream_file(stream_file)
    assert report["model_version"] == "v0001" and report["transactions"] == len(transactions)
    assert report["frauds"] == sum(label.is_fraud for label in labels)
    large = {row["id"]: row for row in report["rules"]}["large"]
    assert large["hits"] == sum(txn.amount > 500 for txn in transactions) > 0
    assert large["review_capacity"] == 0.01
    assert large["over_capacity_reviews"] == max(0, large["reviews"] - len(transactions) // 100)
    assert "| large | review | 0 |" in capsys.readouterr().out
    # The same history with its labels inside the stream file, or named, gives the same report.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(stream_file.read_text() + labels_path_for(stream_file).read_text())
    assert backtest(mixed) == 0
    assert {**json.loads(out.read_text()), "data": ""} == {**report, "data": ""}
    separate = tmp_path / "separate.jsonl"
    separate.write_text(stream_file.read_text())
    assert backtest(separate, "--labels", str(labels_path_for(stream_file))) == 0
    assert {**json.loads(out.read_text()), "data": ""} == {**report, "data": ""}


def test_rules_backtest_refuses_an_invalid_rules_file_with_its_line(
    stream_file: Path, default_registry: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: a, when: amount > 'x', action: review}\n")
    assert main(["rules", "backtest", str(rules), "--data", str(stream_file), "--registry",
                 str(default_registry)]) == 1  # fmt: skip
    assert f"{rules}:2: rule 'a': amount > 'x' compares a number with a text" in (
        capsys.readouterr().err)  # fmt: skip


def test_tail_refuses_an_outcome_that_is_not_a_decision() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "--decision", "review,maybe"])
    assert build_parser().parse_args(["tail", "--decision", "review,decline"]).decision == [
        "review",
        "decline",
    ]


def test_tail_without_a_broker_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FRAUDSTREAM_KAFKA_URL", raising=False)

    assert main(["tail"]) == 2
    assert "FRAUDSTREAM_KAFKA_URL" in capsys.readouterr().err
