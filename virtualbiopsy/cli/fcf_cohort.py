"""``virtualbiopsy fcf-cohort``: compare two groups of a cohort by habitat ADC and by voxel-mean ADC."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from virtualbiopsy.errors import FileFormatError, InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fcf-cohort",
        help="compare two groups (e.g. benign vs malignant) by habitat ADC and voxel-mean ADC (Mann-Whitney U)",
        description=(
            "Compare two groups of a cohort, measure by measure, with the two-sided Mann-Whitney U test and its "
            "effect sizes (common-language CL = U / (n_a n_b) and rank-biserial r = 2 CL - 1), the lowest habitat "
            "ADC (the most cellular habitat) and the voxel-mean ADC of the tumour side by side. The cohort is "
            "either --table CSV (columns case_id, the --group column and the measures) or --cases: 'virtualbiopsy "
            "fcf' output folders (their summary.json; the case id is the folder name) with --groups CSV (case_id "
            "and the --group column). Writes OUT/cohort.csv and OUT/comparison.csv (measure, group_a, group_b, "
            "n_a, n_b, median_a, median_b, u_a, p_value, common_language, rank_biserial; ADC in mm²/s). "
            "Research use only."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", type=Path, help="cohort CSV: case_id, group column, measure columns")
    source.add_argument("--cases", type=Path, nargs="+", help="'virtualbiopsy fcf' output folders, one per case")
    parser.add_argument("--groups", type=Path, help="with --cases: CSV of case_id and the group column")
    parser.add_argument("--group", default="group", help="the column naming each case's group (default: group)")
    parser.add_argument("--compare", help="the two groups to compare, e.g. benign,malignant (default: the two "
                                          "values found)")
    parser.add_argument("--measures", default="habitat_adc_min,voxel_mean_adc",
                        help="numeric columns to compare (default: habitat_adc_min,voxel_mean_adc)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.set_defaults(run=run)


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileFormatError(f"No CSV file at '{path}'.")
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # missing or text: left out of that measure's test


def _cohort_from_cases(folders: list[Path], groups_csv: Path | None, group: str) -> list[dict]:
    from virtualbiopsy.habitats.cohort import case_row

    if groups_csv is None:
        raise InputError("With --cases, give --groups CSV (columns case_id and the group column).")
    group_of = {}
    for row in _read_csv(groups_csv):
        if "case_id" not in row or group not in row:
            raise InputError(f"'{groups_csv.name}' needs the columns case_id and {group}.")
        group_of[row["case_id"].strip()] = row[group].strip()
    rows = []
    for folder in folders:
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            raise FileFormatError(f"'{folder}' holds no summary.json: is it a 'virtualbiopsy fcf' output folder?")
        if folder.name not in group_of:
            raise InputError(f"Case '{folder.name}' is not listed in '{groups_csv.name}'.")
        row = case_row(json.loads(summary_path.read_text()), folder.name, group_of[folder.name])
        rows.append({"case_id": row.pop("case_id"), group: row.pop("group"), **row})
    return rows


def run(args) -> int:
    from virtualbiopsy.habitats.cohort import compare_groups, format_comparison, rows_to_columns
    from virtualbiopsy.mrml.io import write_csv

    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    rows = _read_csv(args.table) if args.table else _cohort_from_cases(args.cases, args.groups, args.group)
    table = rows_to_columns(rows)
    for measure in measures:
        if measure in table:
            table[measure] = [_number(v) for v in table[measure]]
    groups = [g.strip() for g in args.compare.split(",")] if args.compare else None
    result = compare_groups(table, args.group, measures, groups)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(table, args.out / "cohort.csv")
    write_csv(result, args.out / "comparison.csv")
    print(format_comparison(result))
    print(f"-> {args.out / 'comparison.csv'}")
    return 0
