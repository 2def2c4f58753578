"""PolicyDocument: the typed form of ``policies/<name>.json``, read and written as before."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seernet.errors import UserError
from seernet.space.policy import Policy
from seernet.space.policy_document import Measured, PolicyDocument, Prediction, as_document
from seernet.workspace.folder import Workspace

POLICY = {"channels": {"layer1.0": 8, "layer2.0": 16}, "bits": {"conv1": [8, 8], "l1": [4, 6]}}

# Files as seernet wrote them before the type existed: key for key, in their order.
SOLVED = {
    "name": "flops-20M_mixed", "model": "resnet20", "space_fingerprint": "abc123",
    "bits_mode": "mixed", "budgets": {"flops": 2e7, "bitops": 3.2e8},
    "budgets_as_given": {"flops": "50%"},
    "derived_budgets": {"bitops": "FLOPs budget x 16 (as costly as uniform 4-bit)"},
    "channel_multiple": 1, "costs": {"flops": 1.9e7, "bitops": 3.1e8, "params": 1e5, "size": 6e4},
    "unpruned": {"flops": 4e7, "bitops": 2.6e9, "params": 2.7e5, "size": 1.1e6},
    "predicted": {"mean": 88.5, "std": 0.7}, "solve_seconds": 0.93, "note": "",
    "policy": POLICY, "encoded": [0.5, 1.0, 1.0, 0.25],
    "latency_table": {"device": "cpu: x", "threads": 1, "batch_size": 1, "runtime": "torch",
                      "kernels": "default"},
}  # fmt: skip
LEGR = {
    "name": "legr_flops-20M", "model": "resnet20", "space_fingerprint": "abc123",
    "bits_mode": "8-bit", "method": "legr", "budgets": {"flops": 2e7}, "derived_budgets": {},
    "costs": {"flops": 1.9e7}, "unpruned": {"flops": 4e7}, "predicted": None,
    "solve_seconds": 0.0, "note": "LeGR global ranking learned at 50% FLOPs; no predictor involved",
    "policy": POLICY, "encoded": [0.5, 1.0, 1.0, 1.0],
}  # fmt: skip
REFINED = {
    **{k: v for k, v in SOLVED.items() if k not in ("budgets_as_given", "channel_multiple")},
    "measured": {
        "val_accuracy": 88.1, "evaluations": 2, "strategy": "refine", "source": "store",
        "margin": 0.25,
        "candidates": [{"encoded": [0.5], "predicted_mean": 88.0, "predicted_std": 1.0,
                        "measured": 88.1, "new": False, "source": "store"}],
        "skipped": [{"source": "global-ranking", "predicted_mean": 80.0, "predicted_std": 1.0}],
    },
}  # fmt: skip


@pytest.mark.parametrize("old", [SOLVED, LEGR, REFINED], ids=["solve", "legr", "refine"])
def test_an_old_file_loads_and_writes_back_the_same_text(old: dict, tmp_path: Path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(old, indent=2) + "\n")
    doc = PolicyDocument.load(path)
    assert doc.path == path and doc.policy == Policy.from_json(POLICY)
    assert doc.to_json() == old and list(doc.to_json()) == list(old)  # same keys, same order
    again = doc.write(tmp_path / "q.json")
    assert (tmp_path / "q.json").read_text() == path.read_text()
    assert PolicyDocument.load(again.path) == again


def test_typed_fields():
    doc = PolicyDocument.from_json(REFINED)
    assert doc.predicted == Prediction(88.5, 0.7)
    assert isinstance(doc.measured, Measured) and doc.measured.val_accuracy == 88.1
    assert doc.policy.bits["l1"] == (4, 6) and doc.method is None
    assert PolicyDocument.from_json(LEGR).predicted is None


def test_json_round_trip_and_save(tmp_path: Path):
    doc = PolicyDocument.from_json(SOLVED)
    assert PolicyDocument.from_json(doc.to_json()) == doc
    saved = doc.save(Workspace(tmp_path))
    assert saved.path == tmp_path / "policies" / "flops-20M_mixed.json"
    assert PolicyDocument.load(saved.path) == saved
    printed = replace(saved, verified_accuracy=87.0).to_json(with_path=True)
    assert printed["path"] == str(saved.path) and printed["verified_accuracy"] == 87.0
    assert "path" not in saved.to_json()
    assert PolicyDocument.from_json(printed) == replace(saved, verified_accuracy=87.0)


def test_as_document_takes_the_type_or_its_json():
    doc = PolicyDocument.from_json(LEGR)
    assert as_document(doc) is doc and as_document(LEGR) == doc


def test_a_minimal_hand_written_document_loads():
    doc = PolicyDocument.from_json(
        {"name": "toy", "space_fingerprint": "abc123", "policy": POLICY, "extra": 1}
    )
    assert doc.predicted is None and doc.costs == {} and doc.measured is None


NAMES = st.text("abcdefgh_-0123456789", min_size=1, max_size=12)
NUMBERS = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=50, deadline=None)
@given(
    name=NAMES,
    channels=st.dictionaries(NAMES, st.integers(1, 512), max_size=4),
    bits=st.dictionaries(NAMES, st.tuples(st.integers(2, 8), st.integers(2, 8)), max_size=4),
    costs=st.dictionaries(st.sampled_from(["flops", "bitops", "params", "size"]), NUMBERS),
    predicted=st.none() | st.builds(Prediction, NUMBERS, NUMBERS),
    method=st.none() | st.just("legr"),
    multiple=st.none() | st.integers(1, 16),
)
def test_any_document_survives_json_text(name, channels, bits, costs, predicted, method, multiple):
    doc = PolicyDocument(
        name=name, space_fingerprint="f", policy=Policy(channels, bits), costs=costs,
        predicted=predicted, method=method, channel_multiple=multiple,
        encoded=[float(v) for v in channels.values()],
    )  # fmt: skip
    assert PolicyDocument.from_json(json.loads(json.dumps(doc.to_json()))) == doc


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{ not json", "is not JSON"),
        ("[1, 2]", "is not a policy document"),
        (json.dumps({"name": "x", "policy": POLICY}), "lacks 'space_fingerprint'"),
        (json.dumps({**LEGR, "policy": {"channels": {"a": 4.5}, "bits": {}}}), "whole"),
        (json.dumps({**LEGR, "predicted": {"mean": 1.0}}), "malformed policy document"),
        (json.dumps({**REFINED, "measured": {"val_accuracy": 1.0}}), "malformed policy document"),
    ],
    ids=["not json", "not an object", "missing key", "fractional", "bad predicted", "bad measured"],
)
def test_a_bad_file_is_one_clear_line(text: str, message: str, tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        PolicyDocument.load(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_a_missing_file_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        PolicyDocument.load(tmp_path / "nope.json")
