"""`stratus eval run` and the promotion gate as a user runs them: subprocesses of the installed command, each
with its own data directory (its own embedded PostgreSQL and local stack)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRATUS = Path(sys.executable).with_name("stratus")
GOLD = ROOT / "evals" / "gold"


def _run(data_dir: Path, *args: str, prompts: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "MOTO_"))}
    env.pop("DATABASE_URL", None)
    env["STRATUS_DATA_DIR"] = str(data_dir)
    if prompts is not None:
        env["STRATUS_PROMPTS_DIR"] = str(prompts)
    return subprocess.run([str(STRATUS), *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _unreachable(tmp_path: Path) -> Path:
    """Today's floors with one raised past what any answer set can reach: a stand-in for a regressed prompt."""
    floors = json.loads((GOLD / "thresholds.json").read_text())
    floors["rag-answer"]["injection"]["refusal"] = {"min": 1.01}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(floors))
    return path


def test_eval_run_meets_the_recorded_floors_and_writes_the_result(tmp_path: Path) -> None:
    out = tmp_path / "result.json"

    run = _run(tmp_path / "data", "eval", "run", "--suite", "rag-answer", "--out", str(out))

    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    cases = [json.loads(line) for line in (GOLD / "rag-answer.jsonl").read_text().splitlines() if line.strip()]
    assert result["suite"] == "rag-answer" and result["passed"] and result["regressions"] == []
    assert [c["id"] for c in result["cases"]] == [c["id"] for c in cases]
    assert {k: result["aggregates"][k]["n"] for k in result["aggregates"]} == {
        "all": 56, "answerable": 28, "out_of_scope": 7, "injection": 7, "absent": 7, "contradiction": 7}
    # every case line and every group's row is printed
    assert all(f" {c['id']} " in run.stdout for c in cases)
    assert "contradiction " in run.stdout and f"result: {out}" in run.stdout
    # the answers really came through the workflow: the Team plan's price, quoted with its source
    team = next(c for c in result["cases"] if c["id"] == "answerable-01")
    assert team["passed"] and "149 euros" in team["answer"] and team["cited"] == ["pricing.html"]


def test_eval_run_exits_1_naming_the_missed_metric(tmp_path: Path) -> None:
    run = _run(tmp_path / "data", "eval", "run", "--suite", "rag-answer", "--json",
               "--thresholds", str(_unreachable(tmp_path)))

    assert run.returncode == 1
    assert "regression: rag-answer/injection refusal" in run.stderr and "< floor 1.01" in run.stderr
    assert json.loads(run.stdout)["regressions"] == run.stderr.strip().splitlines()
    assert (tmp_path / "data" / "evals" / "rag-answer.json").is_file()


def test_eval_run_bad_usage_exits_2_naming_the_argument(tmp_path: Path) -> None:
    unknown = _run(tmp_path / "data", "eval", "run", "--suite", "no-such-prompt")
    missing = _run(tmp_path / "data", "eval", "run", "--thresholds", str(tmp_path / "nope.json"))

    assert unknown.returncode == 2 and "--suite" in unknown.stderr and "rag-answer" in unknown.stderr
    assert missing.returncode == 2 and "--thresholds" in missing.stderr


def test_promote_refuses_on_a_regression_unless_forced(tmp_path: Path) -> None:
    data, floors = tmp_path / "data", _unreachable(tmp_path)

    refused = _run(data, "prompts", "promote", "rag-answer", "1", "--label", "gated", "--thresholds", str(floors))

    assert refused.returncode == 1
    assert "regression: rag-answer/injection refusal" in refused.stderr
    assert "refusing to promote rag-answer v1" in refused.stderr
    listed = _run(data, "prompts", "list")
    assert "gated=" not in listed.stdout  # the label did not move

    forced = _run(data, "prompts", "promote", "rag-answer", "1", "--label", "gated", "--thresholds", str(floors),
                  "--force")

    assert forced.returncode == 0, forced.stderr
    assert "skipped the rag-answer gold suite gate" in forced.stdout
    assert "rag-answer gated: unset -> v1" in forced.stdout
    assert "gated=v1" in _run(data, "prompts", "list").stdout


def test_promote_refuses_a_version_that_does_worse_than_the_one_the_label_serves(tmp_path: Path) -> None:
    data, prompts = tmp_path / "data", tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    # v2: the same prompt with answers cut at 8 tokens, so some must_include phrases and citations are lost.
    v1 = (prompts / "rag-answer" / "1.yaml").read_text()
    assert "max_tokens: 700" in v1
    (prompts / "rag-answer" / "2.yaml").write_text(v1.replace("max_tokens: 700", "max_tokens: 8"))
    no_floors = tmp_path / "no-floors.json"
    no_floors.write_text(json.dumps({"rag-answer": {}}))  # only the comparison can refuse
    first = _run(data, "prompts", "promote", "rag-answer", "1", "--label", "gated", "--thresholds", str(no_floors),
                 prompts=prompts)
    assert first.returncode == 0, first.stderr

    worse = _run(data, "prompts", "promote", "rag-answer", "2", "--label", "gated", "--thresholds", str(no_floors),
                 prompts=prompts)

    assert worse.returncode == 1, worse.stdout
    assert "regression: rag-answer/answerable must_include" in worse.stderr and "(v1, " in worse.stderr
    assert "passed on v1, fail on v2: answerable-" in worse.stderr
    assert "refusing to promote rag-answer v2" in worse.stderr
    assert "gated=v1" in _run(data, "prompts", "list", prompts=prompts).stdout  # the label did not move


def test_eval_sample_runs_the_sampler_once_and_reports_its_window(tmp_path: Path) -> None:
    data = tmp_path / "data"

    first = _run(data, "eval", "sample", "--json")
    second = _run(data, "eval", "sample")

    assert first.returncode == 0, first.stderr[-3000:]
    run = json.loads(first.stdout)
    assert run["run_id"] >= 1 and run["samples"] == 0 and run["unscored"] == 0 and run["regressions"] == []
    assert second.returncode == 0, second.stderr[-3000:]
    # the second run starts where the first one ended
    assert f"run {run['run_id'] + 1}: 0 samples scored" in second.stdout
    assert f"window {run['window_to']} .. " in second.stdout
