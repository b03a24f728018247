"""The reference log-likelihood ratio in the report: its summary as the parent run stores it, each row's
sample-quality verdict, its column and its Findings line.

The study stage (study/llr.py) computes each row's replicates Delta_{s,t} (evaluation/llr.py: seeds x
folds, in nats, > 0: the row's samples closer to the reference than the base's) and stores an LlrSummary
as JSON in the parent run's tag TAG. The verdict of a row: a one-sample t-test of its S x T replicates
against 0 (df S x T - 1), its 95 % interval; Holm's procedure across the rows at ALPHA decides "better" /
"worse" (by the sign of the mean), and separately "equivalent" (two one-sided tests against +- the
margin `llr` of the registry's `margins:`, in nats); "undecided" otherwise. Scope: conditional on the
trained models of the seeds run (the replicates are classifier fits on disjoint showers, not new
trainings).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from calo_ablate.report import stats
from calo_ablate.report.table import ExtraColumn, StudyTable
from calo_ablate.report.verdicts import margins_of, parse_margin

__all__ = ["MARGIN_KEY", "SKIPPED", "TAG", "LlrSummary", "LlrVerdict", "decide", "findings_lines", "llr_column",
           "llr_of", "llr_verdicts", "margin_nats", "pair_llr_verdicts"]

TAG = "llr"
SKIPPED = "llr_skipped"  # table.header only (never stored): why this report has no ratio
MARGIN_KEY = "llr"  # the equivalence margin's aspect (verdicts.DEFAULT_MARGINS), in nats
NAME = "reference log-likelihood ratio"


@dataclass
class LlrSummary:
    """What the report needs of the stage; JSON in the parent run's tag TAG."""

    replicates: dict[str, list[float]]  # row name -> Delta_{s,t} in nats, seed by seed, fold by fold
    seeds: list[int]  # the study seeds whose samples were compared
    folds: int  # per seed (the profile's evaluate.classifier.trainings)
    seed: int  # the classifier seed of study seed 0's fold 0 (evaluation/llr.py)
    inputs: str
    showers_per_fold: int  # of each sample: row, base, reference
    seconds: float  # wall time of the computation that produced it
    key: str  # what it was computed from (study/cached_stage.py)
    left_out: dict[str, str] = field(default_factory=dict)  # row name -> why it has no replicates
    pairs: dict[str, list[float]] = field(default_factory=dict)  # row -> Delta against its compare: row
    pair_of: dict[str, str] = field(default_factory=dict)  # row -> the row its compare: names

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> LlrSummary:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class LlrVerdict:
    """A row's sample quality against the base by the ratio: better, worse, equivalent or undecided."""

    word: str
    difference: stats.Difference | None  # the one-sample test of the replicates; None with fewer than two
    rows: int  # the rows (or compare: pairs) Holm's procedure ran across
    family: str = "rows"  # what they are, for the text

    def text(self) -> str:
        """'reference log-likelihood ratio -2.1 nats [-2.6, -1.6], p = 0.0003, Holm over 6 rows'."""
        d = self.difference
        if d is None:
            return f"{NAME}: fewer than two replicates, no test"
        within = f", within ±{d.margin:g} nats as this classifier resolves it" if self.word == "equivalent" else ""
        return (f"{NAME} {d.mean:+.3g} nats [{d.low:+.3g}, {d.high:+.3g}], p = {d.p:.2g}, "
                f"Holm over {self.rows} {self.family}{within}")


def llr_of(table: StudyTable) -> LlrSummary | None:
    """The study's summary (the parent run's tag), None when it has none or it is unreadable."""
    text = table.header.get(TAG)
    if not text:
        return None
    try:
        return LlrSummary.from_json(text)
    except (json.JSONDecodeError, TypeError):
        return None


def margin_nats(table: StudyTable) -> float:
    """The equivalence margin in nats; a percentage is of the base's own ratio, 0, so it never holds."""
    value, relative = parse_margin(margins_of(table)[MARGIN_KEY])
    return 0.0 if relative else value


def decide(replicates: Mapping[str, Sequence[float]], margin: float, family: str = "rows") -> dict[str, LlrVerdict]:
    """Each row's verdict from its replicates (nats) and the equivalence margin (nats): a one-sample t-test
    per row, Holm across the rows at ALPHA for better / worse and separately for equivalent."""
    found = {name: stats.one_sample_difference(values, margin) for name, values in replicates.items()}
    tested = {name: d for name, d in found.items() if d is not None}
    differ = stats.holm_rejected({name: d.p for name, d in tested.items()}, stats.ALPHA)
    same = stats.holm_rejected({name: d.p_equivalent for name, d in tested.items()}, stats.ALPHA)
    out = {}
    for name, d in found.items():
        word = "undecided"
        if name in same:
            word = "equivalent"
        elif name in differ and d is not None:
            word = "better" if d.mean > 0 else "worse"
        out[name] = LlrVerdict(word, d, len(tested), family)
    return out


def llr_verdicts(table: StudyTable) -> dict[str, LlrVerdict]:
    """Every compared row's verdict (decide with the study's margin); empty without a summary."""
    summary = llr_of(table)
    return {} if summary is None else decide(summary.replicates, margin_nats(table))


def pair_llr_verdicts(table: StudyTable) -> dict[str, LlrVerdict]:
    """Each row with a `compare:` against the row it names (decide on the pairs' replicates: Holm across the
    study's pairs); empty without a summary or pairs."""
    summary = llr_of(table)
    return {} if summary is None else decide(summary.pairs, margin_nats(table), "pairs")


def llr_column(table: StudyTable) -> ExtraColumn | None:
    """The table's column: mean [95 % interval] and the verdict; None without a summary."""
    summary = llr_of(table)
    if summary is None:
        return None
    text: dict[str, str] = {}
    data: dict[str, dict[str, Any]] = {}
    for name, v in llr_verdicts(table).items():
        d = v.difference
        if d is None:
            text[name] = "no test"
            continue
        text[name] = f"{d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}] {v.word}"
        data[name] = {"llr_mean": d.mean, "llr_low": d.low, "llr_high": d.high, "llr_p": d.p, "llr_n": d.n,
                      "llr_verdict": v.word}
    text.update({name: "not computed" for name in summary.left_out})
    return ExtraColumn("LLR vs base (nats) [95 % CI]", text, data)


def findings_lines(table: StudyTable) -> list[str]:
    """The Findings line that states the procedure, its scope and its error rate (the skip reason without a
    summary)."""
    summary = llr_of(table)
    if summary is None:
        skipped = table.header.get(SKIPPED)
        return [f"- **Reference log-likelihood ratio**: not computed: {skipped}"] if skipped else []
    n = len(summary.seeds) * summary.folds
    rows = len(summary.replicates)
    left = "; ".join(f"{name}: {why}" for name, why in summary.left_out.items())
    return [
        f"- **Reference log-likelihood ratio** (own procedure, not a CaloChallenge metric; it decides the "
        f"\"sample quality\" above): for each seed ({', '.join(map(str, summary.seeds))}) the row's, the base's and "
        f"the reference showers are split into {summary.folds} disjoint folds of {summary.showers_per_fold} (the "
        f"profile's classifier trainings); on each fold a classifier ({summary.inputs} inputs, standardised) tells "
        "the row's showers from the base's and the mean logit p(row | x) over the fold's reference showers x "
        "estimates KL(ref || base) - KL(ref || row) in nats (> 0: the row is closer to the reference). A "
        f"one-sample t-test of the {n} replicates against 0 (df {n - 1}), Holm across the {rows} rows at alpha = "
        f"{stats.ALPHA} (better / worse), and separately two one-sided tests against ±{margin_nats(table):g} "
        "nats (equivalent). Scope: conditional on the trained models of these seeds (the replicates are "
        "classifier fits on disjoint showers, not new trainings): it says whether these models' samples are "
        "further from the reference than the base's, not whether a new training would be. Error rate: a false "
        f"better or worse in at most {stats.ALPHA:g} of studies with no difference (Holm; simulated in "
        "docs/guide/verdicts.md). A classifier that misses a difference pulls the ratio towards 0, so "
        "equivalent means no difference beyond the margin that this classifier resolves."
        + (f" Not computed for: {left}." if left else ""),
    ]
