"""Bad-input matrix, feature tables: ``reduce``, ``harmonise`` and ``predict`` given tables a user could bring
(a text cell in a number column, a missing or one-class label, a batch of one case, outcome columns named as
features, options out of range).

Every case edits a copy of the seeded synthetic cohort (``predict cohort``, with a 'site' column added) and is
held to the refusal contract of ``refusals.assert_cli_refuses``: exit 2, one line naming the problem (the bad
cell by its case and column), no traceback, nothing written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from refusals import CliCase, assert_cli_refuses

from virtualbiopsy.cli.main import main


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    assert main(["predict", "cohort", "--out", str(folder / "c"), "--n", "40"]) == 0
    table = pd.read_csv(folder / "c" / "cohort.csv")
    table.insert(1, "site", ["A" if i % 2 else "B" for i in range(len(table))])
    table.to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


_COHORT: list[Path] = []  # set by the autouse fixture below, read by the cases' ``make``


@pytest.fixture(autouse=True)
def _cohort_path(cohort_csv):
    _COHORT[:] = [cohort_csv]


def _table(ws: Path, edit=None) -> Path:
    table = pd.read_csv(_COHORT[0], dtype=str, keep_default_na=False)
    if edit is not None:
        table = edit(table)
    path = ws / "features.csv"
    table.to_csv(path, index=False)
    return path


def _cell(case_index: int, column: str, value: str):
    def edit(table):
        table.loc[case_index, column] = value
        return table
    return edit


def _command(*words, edit=None, table=True):
    """``virtualbiopsy WORDS... --table <edited cohort> --out ws/out`` plus the case's own arguments."""
    def make(ws: Path):
        argv = [str(w) if not callable(w) else w(ws) for w in words]
        if table:
            argv += ["--table", _table(ws, edit)]
        return argv + ["--out", ws / "out"]
    return make


def _reduce(*extra, edit=None):
    return _command("reduce", *extra, edit=edit)


def _harmonise(*extra, edit=None):
    return _command("harmonise", *extra, edit=edit)


def _train(*extra, edit=None):
    return _command("predict", "train", "--bootstrap", "20", "--folds", "3", *extra, edit=edit)


def _keep_rows(n):
    return lambda table: table.head(n)


def _label_one_class(table):
    table["risk_class"] = "high"
    return table


def _label_singleton(table):
    table["grade"] = ["low"] + ["high"] * (len(table) - 1)
    return table


def _one_site(table):
    table["site"] = "A"
    return table


def _site_of_one_case(table):
    table.loc[0, "site"] = "C"
    return table


def _blank_site(table):
    table.loc[3, "site"] = ""
    return table


def _duplicate_id(table):
    table.loc[5, "case_id"] = table.loc[4, "case_id"]
    return table


def _text_column(table):
    table["adc_mean"] = ["n/a"] * len(table)
    return table


CASES = [
    # -- reduce ------------------------------------------------------------------------------------
    CliCase("reduce-no-table-file", _command("reduce", "--table", lambda ws: ws / "nowhere.csv", table=False),
            ("nowhere.csv",)),
    CliCase("reduce-text-cell", _reduce(edit=_cell(4, "adc_mean", "abc")), ("abc", "adc_mean", "NB0005")),
    CliCase("reduce-label-column-absent", _reduce("--label", "grade"), ("grade",)),
    CliCase("reduce-label-one-class", _reduce("--label", "risk_class", edit=_label_one_class),
            ("risk_class", "two classes", "has 1")),
    CliCase("reduce-label-class-of-one-case", _reduce("--label", "grade", edit=_label_singleton),
            ("grade", "at least 2 cases")),
    CliCase("reduce-features-absent", _reduce("--features", "adc_mean", "adc_meen"), ("adc_meen",)),
    CliCase("reduce-exclude-absent", _reduce("--exclude", "noise_9"), ("noise_9",)),
    CliCase("reduce-features-id", _reduce("--features", "adc_mean", "case_id"), ("case_id",)),
    CliCase("reduce-too-few-cases", _reduce(edit=_keep_rows(2)), ("2",)),
    CliCase("reduce-correlation-out-of-range", _reduce("--correlation", "1.5"), ("--correlation", "1.5")),
    CliCase("reduce-percentile-out-of-range", _reduce("--variance-rule", "percentile", "--variance-percentile",
                                                      "150"), ("percentile", "150")),
    CliCase("reduce-negative-near-constant-share", _reduce("--near-constant-share", "-0.1"),
            ("near-constant", "-0.1")),
    CliCase("reduce-duplicate-case-id", _reduce(edit=_duplicate_id), ("NB0005",)),
    CliCase("reduce-apply-model-absent", _reduce("--apply", lambda ws: ws / "model.json"), ("model.json",)),
    CliCase("reduce-apply-model-not-json", _reduce("--apply", lambda ws: (ws / "m.json").write_text("{x") and
                                                   ws / "m.json"), ("m.json",)),
    # -- harmonise ---------------------------------------------------------------------------------
    CliCase("harmonise-no-batch", _harmonise(), ("--batch",)),
    CliCase("harmonise-batch-column-absent", _harmonise("--batch", "scanner"), ("scanner",)),
    CliCase("harmonise-one-batch", _harmonise("--batch", "site", edit=_one_site), ("site", "two batches")),
    CliCase("harmonise-blank-batch", _harmonise("--batch", "site", edit=_blank_site), ("site", "NB0004")),
    CliCase("harmonise-text-cell", _harmonise("--batch", "site", edit=_cell(6, "t2_entropy", "abc")),
            ("abc", "t2_entropy", "NB0007")),
    CliCase("harmonise-binary-feature", _harmonise("--batch", "site", "--features", "adc_mean", "mycn_amplified"),
            ("mycn_amplified", "binary", "at least 2 features")),
    CliCase("harmonise-outcome-feature", _harmonise("--batch", "site", "--features", "adc_mean", "os_event"),
            ("os_event", "at least 2 features")),
    CliCase("harmonise-covariate-absent", _harmonise("--batch", "site", "--covariate", "stage"), ("stage",)),
    CliCase("harmonise-categorical-not-covariate", _harmonise("--batch", "site", "--categorical", "age_months"),
            ("age_months", "covariates")),
    CliCase("harmonise-covariate-is-batch", _harmonise("--batch", "site", "--covariate", "site"), ("site",)),
    CliCase("harmonise-apply-model-absent", _harmonise("--apply", lambda ws: ws / "combat.json"), ("combat.json",)),
    # -- predict train -----------------------------------------------------------------------------
    CliCase("train-text-cell", _train("--endpoint", "mycn_amplified", edit=_cell(9, "adc_mean", "abc")),
            ("abc", "adc_mean", "NB0010")),
    CliCase("train-text-cell-in-endpoint-features", _train("--endpoint", "mycn_amplified",
                                                           edit=_cell(2, "noise_3", "1,5")), ("1,5", "noise_3")),
    CliCase("train-endpoint-absent", _train("--endpoint", "relapse"), ("relapse",)),
    CliCase("train-endpoint-one-class", _train("--endpoint", "risk_class", edit=_label_one_class),
            ("risk_class",)),
    CliCase("train-no-endpoint", _train(), ("endpoint",)),
    CliCase("train-time-without-event", _train("--time", "os_days"), ("event column",)),
    CliCase("train-negative-time", _train("--time", "os_days", "--event", "os_event", "--model", "cox",
                                          edit=_cell(1, "os_days", "-5")), ("os_days", "-5")),
    CliCase("train-event-not-binary", _train("--time", "os_days", "--event", "os_event", "--model", "cox",
                                             edit=_cell(1, "os_event", "2")), ("os_event",)),
    CliCase("train-unknown-model", _train("--endpoint", "mycn_amplified", "--model", "deep_forest"),
            ("deep_forest",)),
    CliCase("train-feature-is-endpoint", _train("--endpoint", "mycn_amplified", "--features", "adc_mean",
                                                "mycn_amplified"), ("mycn_amplified",)),
    CliCase("train-folds-exceed-cases", _train("--endpoint", "mycn_amplified", edit=_keep_rows(6)), ("fold",)),
    CliCase("train-duplicate-case-id", _train("--endpoint", "mycn_amplified", edit=_duplicate_id), ("NB0005",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_table_is_refused(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)


def test_the_matrix_has_a_case_for_every_table_command():
    commands = {case.id.split("-")[0] for case in CASES}
    assert commands == {"reduce", "harmonise", "train"}
    assert len(CASES) == len({c.id for c in CASES})


def test_a_refused_table_leaves_a_previous_output_untouched(cohort_csv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reduce", "--table", str(cohort_csv), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    broken = tmp_path / "broken.csv"
    shutil.copy(cohort_csv, broken)
    lines = broken.read_text().splitlines()
    lines[3] += ",1.0"  # a row with one cell too many
    broken.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["reduce", "--table", str(broken), "--out", str(out), "--overwrite"]) == 2
    assert "broken.csv" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_what_a_user_names_explicitly_is_used_with_a_warning_not_refused(cohort_csv, tmp_path, capsys):
    """An outcome column named in --features, a feature column with no value at all, a batch of one case:
    legitimate choices (or the reference implementation's behaviour), so warned about, not refused."""
    assert main(["reduce", "--table", str(cohort_csv), "--features", "adc_mean", "os_days", "t2_entropy",
                 "--out", str(tmp_path / "r")]) == 0
    assert "warning: These features look like outcomes: os_days" in capsys.readouterr().out
    empty = tmp_path / "empty_feature.csv"
    _text_column(pd.read_csv(cohort_csv)).to_csv(empty, index=False)
    assert main(["predict", "train", "--table", str(empty), "--endpoint", "mycn_amplified", "--features", "adc_mean",
                 "t2_entropy", "--bootstrap", "20", "--folds", "3", "--out", str(tmp_path / "t")]) == 0
    assert "no value in any case and are ignored: adc_mean" in capsys.readouterr().out
    lone = tmp_path / "lone.csv"
    _site_of_one_case(pd.read_csv(cohort_csv)).to_csv(lone, index=False)
    assert main(["harmonise", "--table", str(lone), "--batch", "site", "--out", str(tmp_path / "h")]) == 0
    assert "batch(es) C have a single case" in capsys.readouterr().out  # location only, as sva's ComBat
