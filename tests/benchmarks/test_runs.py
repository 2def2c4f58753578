"""The end-to-end bench's run keys, resume logic and seed statistics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import benchmarks.bench_end_to_end as bench
from benchmarks.anchors.runs import RunStore, clear_win, mean_std, run_key, verdict
from seernet.space.policy import Policy
from seernet.steps.compress import CompressSettings

IDENT = {"model": "resnet20", "space": "abc"}


def policy(keep: int = 8, bits: int = 8) -> Policy:
    return Policy({"g": keep}, {"conv": (bits, bits)})


def test_run_key_changes_with_recipe_policy_and_identity_only():
    k = run_key(CompressSettings(seed=0), policy(), IDENT)
    assert k == run_key(CompressSettings(seed=0), policy().to_json(), dict(reversed(IDENT.items())))
    others = [
        run_key(CompressSettings(seed=1), policy(), IDENT),
        run_key(CompressSettings(seed=0, steps=10), policy(), IDENT),
        run_key(CompressSettings(seed=0, lr=0.02), policy(), IDENT),
        run_key(CompressSettings(seed=0), policy(keep=6), IDENT),
        run_key(CompressSettings(seed=0), policy(bits=4), IDENT),
        run_key(CompressSettings(seed=0), policy(), {**IDENT, "space": "xyz"}),
    ]
    assert len({k, *others}) == 1 + len(others)
    # how exports are written and timed does not change the fine-tuned model
    assert k == run_key(
        CompressSettings(seed=0, ort_threads=2, qdq_residuals="float"), policy(), IDENT
    )


def test_store_round_trip(tmp_path):
    store = RunStore(tmp_path / "runs")
    assert not store.done("k1")
    store.save("k1", {"test": 91.5})
    assert store.done("k1") and store.load("k1") == {"test": 91.5}
    assert not list((tmp_path / "runs").glob("*.tmp"))


def test_seed_statistics_and_wins():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert clear_win([91.0, 91.2, 90.8], [90.0, 90.1, 89.9])  # gap 1.0 > larger std 0.2
    assert not clear_win([91.0, 92.0, 90.0], [90.5, 90.6, 90.4])  # gap 0.5 < std 1.0
    assert verdict([91.0, 92.0, 90.0], [90.5, 90.6, 90.4]) == "tie"
    assert verdict([88.0, 88.1, 87.9], [90.0, 90.1, 89.9]) == "loss"


def fake_ctx(tmp_path):
    space = SimpleNamespace(fingerprint="abc")
    ws = SimpleNamespace(path=lambda *parts: tmp_path.joinpath("ws", *parts))
    costs = SimpleNamespace(
        of_policy=lambda p: {"flops": float(p.channels["g"])}, unpruned=lambda: {"flops": 8.0}
    )
    return SimpleNamespace(space=space, ws=ws, costs=costs)


def test_run_arms_resumes_and_reruns_on_a_new_recipe(tmp_path, monkeypatch):
    calls = []

    def fake_compress(ctx, doc, pol, settings):
        calls.append((doc["name"], settings.seed, settings.steps))
        acc = 80.0 + settings.seed
        return {
            "costs": {"flops": 1.0, "bitops": 64.0},
            "seconds": {"total": 0.1},
            "latency": None,
            "accuracy": {
                "after_finetune": {"test": acc, "val": acc},
                "before_finetune": {"test": 10.0},
            },
        }

    monkeypatch.setattr(bench, "compress", fake_compress)
    monkeypatch.setattr(bench, "identity", lambda ctx: IDENT)
    ctx, store = fake_ctx(tmp_path), RunStore(tmp_path / "runs")
    cell = bench.Cell("8bit", 0.5)
    arms = [
        bench.Arm(cell, "uniform", policy(6), {"flops": 1.0}),
        bench.Arm(cell, "tp-global", policy(6), {"flops": 1.0}),
        bench.Arm(cell, "hawq", policy(4), {"flops": 1.0}),
    ]
    args = SimpleNamespace(seeds=[0, 1, 2], steps=5, distill=None)
    bench.run_arms(ctx, arms, args, store)
    assert len(calls) == 6  # two distinct policies x 3 seeds: the shared policy runs once
    assert {c[0] for c in calls} >= {"50%-8bit-uniform", "50%-8bit-hawq-s1", "50%-8bit-hawq-s2"}
    doc = json.loads((tmp_path / "ws" / "policies" / "50%-8bit-hawq.json").read_text())
    assert doc["policy"] == policy(4).to_json() and doc["costs"] == {"flops": 4.0}
    bench.run_arms(ctx, arms, args, store)
    assert len(calls) == 6  # everything stored: nothing reruns
    bench.run_arms(ctx, arms[:1], SimpleNamespace(seeds=[0, 1, 2], steps=7, distill=None), store)
    assert len(calls) == 9  # a changed recipe is a new run
    monkeypatch.setattr(bench, "kernel_bytes", lambda ctx, pol: 100.0)
    res = bench.arm_results(ctx, arms[1], args, store)
    assert res["tests"] == [80.0, 81.0, 82.0]
    assert (
        bench.arm_results(
            ctx, arms[0], SimpleNamespace(seeds=[0, 1, 2, 3], steps=5, distill=None), store
        )
        is None
    )


def test_cells_and_options():
    assert bench.Cell("mixed", 0.3, 9).name == "30%-mixed-9x"
    assert bench.Cell("size", bits=2).name == "size-2bit"
    args = bench.parse_args(
        ["--methods", "hawq,mct", "--seeds", "0", "--fractions", "0.5", "--factors", "16"]
    )
    assert (
        args.methods == {"hawq", "mct"}
        and args.seeds == [0]
        and args.fractions == [0.5]
        and args.factors == [16]
    )
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "legr"])


def test_summary_table_names_ties_and_wins():
    full = {"flops": 100.0}

    def mk(method: str, tests: list[float]) -> dict:
        m, s = mean_std(tests)
        return {
            "cell": "50%-8bit",
            "mode": "8bit",
            "method": method,
            "mean": m,
            "std": s,
            "tests": tests,
            "costs": {"flops": 50.0, "bitops": 3200.0},
            "budgets": {"flops": 50.0},
        }

    rows = [
        mk("seernet", [91.0, 91.1, 90.9]),
        mk("uniform", [90.0, 90.2, 89.8]),
        mk("tp-global", [90.5, 90.6, 90.4]),
    ]
    detail, summary = bench.tables(rows, full)
    assert "tp-global" in summary and "+0.50" in summary and "win" in summary
    assert detail.count("50%-8bit") == 3
    assert "not clearly ahead in: none" in summary
    # +0.10 over tp-global, within the std: a tie, and named as such
    rows[0] = mk("seernet", [90.6, 90.8, 90.4])
    assert "not clearly ahead in: 50%-8bit (tie vs tp-global, +0.10)" in bench.tables(rows, full)[1]


def test_mct_results_are_cached_per_target(tmp_path, monkeypatch):
    requested = []

    def fake_run(cmd, stdout, stderr, check):
        targets = [float(t) for t in cmd[cmd.index("--weights-memory") + 1].split(",")]
        requested.append(targets)
        results = [
            {"weights_memory_target": t, "weights_memory": t, "test": t / 10, "bits": {}}
            for t in targets
        ]
        out = cmd[cmd.index("--out") + 1]
        with open(out, "w") as f:
            json.dump({"mct_version": "x", "torch_version": "y", "results": results}, f)
        return SimpleNamespace(returncode=0)

    peers = tmp_path / "peers" / ".venv" / "bin" / "python"
    peers.parent.mkdir(parents=True)
    peers.touch()
    monkeypatch.setattr(bench, "PEERS_PYTHON", peers)
    monkeypatch.setattr(bench, "identity", lambda ctx: IDENT)
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    ctx = SimpleNamespace(ws=SimpleNamespace(root=tmp_path / "ws"))
    args = SimpleNamespace(out=str(tmp_path / "out"))
    first = bench.mct_results(ctx, args, [100.0, 200.0])
    assert [r["test"] for r in first] == [10.0, 20.0]
    second = bench.mct_results(ctx, args, [200.0, 300.0])
    assert requested == [[100.0, 200.0], [300.0]]  # 200 came from the cache
    assert [r["test"] for r in second] == [20.0, 30.0] and second[0]["mct_version"] == "x"


def test_a_failed_run_is_counted_skipped_and_retried(tmp_path, monkeypatch):
    broken = {"on": True}

    def flaky_compress(ctx, doc, pol, settings):
        if broken["on"] and pol.channels["g"] == 4:
            raise RuntimeError("disk full")
        return {"costs": {}, "seconds": {}, "accuracy": {"after_finetune": {"test": 1.0, "val": 1.0},
                                                         "before_finetune": {"test": 0.0}}}  # fmt: skip

    monkeypatch.setattr(bench, "compress", flaky_compress)
    monkeypatch.setattr(bench, "identity", lambda ctx: IDENT)
    ctx, store = fake_ctx(tmp_path), RunStore(tmp_path / "runs")
    cell = bench.Cell("8bit", 0.5)
    arms = [bench.Arm(cell, "hawq", policy(4), {}), bench.Arm(cell, "uniform", policy(6), {})]
    args = SimpleNamespace(seeds=[0], steps=1, distill=None)
    assert bench.run_arms(ctx, arms, args, store) == 1
    assert len(list(store.root.glob("*.json"))) == 1  # the other run went on and was stored
    broken["on"] = False
    assert bench.run_arms(ctx, arms, args, store) == 0
    assert len(list(store.root.glob("*.json"))) == 2
