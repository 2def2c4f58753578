"""The policy document: one solved policy and what is known about it, as ``solve``,
``solve --refine`` and ``legr`` write it to ``policies/<name>.json`` and ``compress``,
``report`` and ``seernet.Compressor`` read it.

The JSON is the layout these files always had, key for key and in the same order, so older
workspaces load unchanged and a new file is the same text the dicts gave. Keys that only some
writers use (``method``: LeGR; ``budgets_as_given``, ``channel_multiple``, ``latency_table``:
solve; ``measured``: solve --refine) are left out when unset, never written as null;
``predicted`` is the exception, null for LeGR (no predictor involved). ``path`` (where the file
is) and ``verified_accuracy`` / ``verified_latency_ms`` (what ``solve --verify`` measured after
writing it) are not in the file; ``--json`` prints them.

Reading needs only ``name``, ``space_fingerprint`` and ``policy``: all ``compress`` uses, and
all that hand-written files carry. Unknown keys are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from seernet.errors import UserError
from seernet.space.policy import Policy
from seernet.workspace.artifacts import POLICIES_NAME, write_json
from seernet.workspace.folder import Workspace

REQUIRED_KEYS = ("name", "space_fingerprint", "policy")
# null in the file says something ("no prediction": LeGR), so it is written
NULL_WRITTEN = ("predicted",)
HINT = "pass a policy file written by 'seernet solve'"


@dataclass(frozen=True)
class Prediction:
    """The predictor's accuracy (%) for a policy, before anyone measured it."""

    mean: float
    std: float

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


@dataclass(frozen=True, kw_only=True)
class Measured:
    """What ``solve --refine`` measured for one budget: the returned policy's val accuracy,
    the new measurements it took, and every candidate and skipped anchor (as plain records)."""

    val_accuracy: float
    evaluations: int
    strategy: str
    source: str | None = None  # where the returned policy came from (store, solve, ...)
    margin: float | None = None  # a candidate had to beat the incumbent by more than this
    candidates: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] | None = None
    # The returned policy's median latency (ms), measured where the latency table was made
    # (its runtime, batch and threads), and whether a latency budget held; unset: no table.
    latency_ms: float | None = None
    latency_held: bool | None = None
    # The unpruned model timed in turn with it, the policy's share of that time (paired run
    # by run), and whether the share is within the budget's share of the table's unpruned
    # latency (drift cancels out).
    unpruned_latency_ms: float | None = None
    latency_share: float | None = None
    latency_held_as_share: bool | None = None
    # Set when the first answer's share missed: how often the budget was refined again,
    # and the (tightened) latency budget the returned policy was solved for.
    latency_retries: int | None = None
    latency_budget_solved: float | None = None

    def to_json(self) -> dict[str, Any]:
        return _json_fields(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Measured:
        return cls(**_known(cls, obj))


@dataclass(frozen=True, kw_only=True)
class PolicyDocument:
    """One solved policy with its budgets, costs, prediction and measurements.

    Field order is the file's key order. Frozen: ``dataclasses.replace`` makes the variant
    with a path or a verification; the dicts inside are not copied, leave them alone."""

    name: str
    model: str | None = None
    space_fingerprint: str
    bits_mode: str | None = None  # "mixed" or "N-bit"
    method: str | None = None  # "legr"; None: seernet's solve
    budgets: dict[str, float] = field(default_factory=dict)  # absolute, per cost name
    budgets_as_given: dict[str, str] | None = None  # the text the user wrote ("50%")
    derived_budgets: dict[str, str] = field(default_factory=dict)  # cost name -> why
    channel_multiple: int | None = None  # every pruned kept count is a multiple of it
    costs: dict[str, float] = field(default_factory=dict)  # of the policy
    unpruned: dict[str, float] = field(default_factory=dict)  # of the uncompressed model
    predicted: Prediction | None = None  # None: no predictor involved (LeGR)
    solve_seconds: float = 0.0
    note: str = ""
    policy: Policy
    encoded: list[float] = field(default_factory=list)  # the policy in the space's codec
    latency_table: dict[str, Any] | None = None  # where the predicted latency was measured
    measured: Measured | None = None
    path: Path | None = None
    verified_accuracy: float | None = None
    verified_latency_ms: float | None = None

    def to_json(self, with_path: bool = False) -> dict[str, Any]:
        """The file's content; ``with_path``: also ``path``, as ``--json`` prints it."""
        out = _json_fields(self)
        if with_path and self.path is not None:
            out["path"] = str(self.path)
        else:
            out.pop("path", None)
        return out

    @classmethod
    def from_json(cls, obj: object, where: str = "the policy document") -> PolicyDocument:
        """A document from its JSON object; a UserError naming ``where`` if it is not one."""
        if not isinstance(obj, dict):
            raise UserError(f"{where} is not a policy document (a JSON object); {HINT}")
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        if missing:
            raise UserError(
                f"{where} lacks {', '.join(map(repr, missing))}: not a policy file written by 'seernet solve'"
            )
        _check_whole_numbers(obj["policy"], where)
        kw = _known(cls, obj)
        try:
            kw["policy"] = Policy.from_json(obj["policy"])
            if kw.get("predicted") is not None:
                kw["predicted"] = Prediction(**kw["predicted"])
            if kw.get("measured") is not None:
                kw["measured"] = Measured.from_json(kw["measured"])
            if kw.get("path") is not None:
                kw["path"] = Path(kw["path"])
            return cls(**kw)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise UserError(f"{where} is a malformed policy document ({exc}); {HINT}") from exc

    @classmethod
    def load(cls, path: str | Path) -> PolicyDocument:
        """The document in the file at ``path`` (its ``path`` set); a UserError if there is none."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"policy file {path} does not exist: {HINT}")
        try:
            obj = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not JSON ({exc}); {HINT}") from exc
        return replace(cls.from_json(obj, str(path)), path=path)

    def write(self, path: Path) -> PolicyDocument:
        """Write the file (atomically); this document with its ``path``."""
        write_json(path, self.to_json())
        return replace(self, path=path)

    def save(self, ws: Workspace) -> PolicyDocument:
        """Write ``policies/<name>.json`` in ``ws``; this document with its ``path``."""
        return self.write(ws.path(POLICIES_NAME, f"{self.name}.json"))


def as_document(doc: PolicyDocument | dict[str, Any]) -> PolicyDocument:
    """A document given as the type or as its JSON object (``--json`` output, older callers)."""
    return doc if isinstance(doc, PolicyDocument) else PolicyDocument.from_json(doc)


def _json_fields(obj: object) -> dict[str, Any]:
    """The dataclass's fields in order, nested types as JSON; unset ones left out."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.name not in NULL_WRITTEN:
            continue
        out[f.name] = value.to_json() if hasattr(value, "to_json") else value
    return out


def _known(cls: type, obj: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in obj.items() if k in names}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_whole_numbers(obj: object, where: str) -> None:
    """Whole numbers only: ``Policy.from_json`` would silently truncate a hand-edited 4.5 to 4."""
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("channels"), dict)
        or not isinstance(obj.get("bits"), dict)
    ):
        raise UserError(f"{where}: 'policy' must be an object with 'channels' and 'bits' objects")
    bad = [k for k, v in obj["channels"].items() if not _is_int(v)]
    bad += [
        k
        for k, v in obj["bits"].items()
        if not (isinstance(v, list) and len(v) == 2 and all(map(_is_int, v)))
    ]
    if bad:
        raise UserError(
            f"{where}: {bad[0]!r} needs a whole channel count or a [weight, activation] pair of whole bit-widths"
        )
