"""``virtualbiopsy reduce`` and ``virtualbiopsy harmonise``: cohort feature tables (CSV) to a signature / ComBat.

Both write CSV tables, PNG figures and the fitted model as JSON to ``--out``; ``--apply MODEL.json``
applies a model fitted earlier to new cases instead of fitting one.
"""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.progress import ConsoleProgress, Task

FEATURE_HELP = ("feature columns (repeatable, or comma-separated; default: every numeric column except ids, batch, "
                "label, outcome-like columns such as os_days / os_event, binary or categorical codes and "
                "diagnostics_*)")


def add_parser(subparsers) -> None:
    reduce = subparsers.add_parser(
        "reduce",
        help="reduce a cohort feature table to a signature (variance filter, correlation pruning, factor analysis)",
        description=(
            "Fit the feature reduction on a cohort table (CSV, one row per case; features: the numeric columns "
            "other than ids, label, batch, outcome-like columns (os_days, os_event, ...), binary / categorical codes "
            "and diagnostics_*, or the columns named with --features) and write signature.csv, loadings.csv, "
            "reduction_log.csv (what was dropped and why), reduction_model.json, correlation.png and loadings.png. "
            "With --label also exploration.csv (Mann-Whitney p, Bonferroni, AUC, volume correlation) and "
            "volcano.png. With --apply, apply a saved reduction to new cases instead. Everything is checked before "
            "any file is written."
        ),
    )
    reduce.add_argument("--table", type=Path, required=True, help="feature table (CSV)")
    reduce.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    reduce.add_argument("--label", help="two-class label column for the univariate exploration (never a feature)")
    reduce.add_argument("--volume", help="volume column for volume surrogates (default: original_shape_MeshVolume)")
    reduce.add_argument("--features", nargs="+", action="extend", metavar="COL", help=FEATURE_HELP)
    reduce.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="COL",
                        help="columns that are not features (repeatable, or comma-separated)")
    reduce.add_argument("--variance-rule", choices=("near-constant", "percentile", "knee", "fixed", "off"),
                        default="near-constant",
                        help="low-variance filter (default: near-constant: drop only features where at least "
                             "--near-constant-share of the cases hold one value; constant features always go). "
                             "percentile, knee and fixed work on the min-max-scaled variances")
    reduce.add_argument("--near-constant-share", type=float, default=0.95,
                        help="near-constant rule: the share of cases holding one value (default: 0.95)")
    reduce.add_argument("--variance-percentile", type=float, default=10.0,
                        help="--variance-rule percentile: drop features below this percentile (default: 10)")
    reduce.add_argument("--variance-threshold", type=float, default=0.0,
                        help="--variance-rule fixed: minimum scaled variance (at most 0.25)")
    reduce.add_argument("--correlation", type=float, default=0.9,
                        help="prune pairs with |Pearson r| above this (default: 0.9; 1 turns pruning off)")
    reduce.add_argument("--factors", type=int, default=None,
                        help="number of factors (default: chosen by --factor-rule)")
    reduce.add_argument("--factor-rule", choices=("parallel", "kaiser"), default="parallel",
                        help="parallel analysis (default) or Kaiser (eigenvalues of the correlation matrix > 1)")
    reduce.add_argument("--apply", type=Path, metavar="MODEL.json", help="apply this saved reduction to --table")
    reduce.set_defaults(run=run_reduce)

    harmonise = subparsers.add_parser(
        "harmonise",
        help="ComBat-harmonise a cohort feature table by batch/site, keeping covariate effects",
        description=(
            "Fit ComBat (empirical Bayes, parametric unless --non-parametric) on a cohort table and write "
            "harmonised.csv (same columns, features harmonised), combat_model.json, batch_effect.csv (Kruskal-Wallis "
            "p of batch per feature before/after) and batch_effect.png (PCA and one feature, before/after). Features "
            "as for reduce: outcome-like columns, ids, text and binary / categorical codes are never harmonised "
            "(copied unchanged, and said so). With --apply, harmonise new cases of known batches with a saved model "
            "instead. Everything is checked before any file is written."
        ),
    )
    harmonise.add_argument("--table", type=Path, required=True, help="feature table (CSV)")
    harmonise.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    harmonise.add_argument("--batch", help="batch / site column (required unless --apply)")
    harmonise.add_argument("--covariate", action="append", default=[], metavar="COL",
                           help="biological covariate to preserve (repeatable; text columns are categorical, "
                                "numeric ones linear unless also given with --categorical)")
    harmonise.add_argument("--categorical", action="append", default=[], metavar="COL",
                           help="treat this numeric covariate as categories, one term per level (repeatable; "
                                "e.g. a stage coded 1-4); it must also be a --covariate")
    harmonise.add_argument("--features", nargs="+", action="extend", metavar="COL", help=FEATURE_HELP)
    harmonise.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="COL",
                           help="columns that are not features (copied unchanged; repeatable, or comma-separated)")
    harmonise.add_argument("--non-parametric", action="store_true", help="non-parametric empirical Bayes")
    harmonise.add_argument("--apply", type=Path, metavar="MODEL.json", help="apply this saved ComBat model")
    harmonise.set_defaults(run=run_harmonise)


def _names(values) -> list[str] | None:
    """Column names from repeated / comma-separated options; None when the option was not given."""
    if values is None:
        return None
    return [name.strip() for item in values for name in item.split(",") if name.strip()]


def _read(path: Path):
    import pandas as pd

    from virtualbiopsy.frames import frame_from_table

    if not path.is_file():
        raise FileFormatError(f"No table at '{path}'.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FileFormatError(f"'{path}' is not a readable CSV table ({str(error).strip()}).") from error
    if frame.empty:
        raise InputError(f"The table '{path}' has no rows (only the header" + (": " + ", ".join(
            map(str, frame.columns[:10])) if len(frame.columns) else "") + ").")
    return frame_from_table({name: frame[name].tolist() for name in frame.columns})


def _write(out: Path, tables: dict, writers=()) -> None:
    """Write the CSV tables, then run the figure writers: only after everything was computed and checked."""
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(out / name, index=False)
    for write in writers:
        write()


def run_reduce(args) -> int:
    from virtualbiopsy.columns import require_unique_cases
    from virtualbiopsy.signature import exploration, load_model, save_model
    from virtualbiopsy.signature.reduction import (
        CorrelationParameters,
        FactorParameters,
        FeatureReduction,
        ReductionParameters,
        VarianceFilterParameters,
    )
    from virtualbiopsy.signature.tables import labels_as_text, require_columns

    table = _read(args.table)
    if args.apply:
        require_unique_cases(table)
        reduction = load_model(args.apply)
        if not isinstance(reduction, FeatureReduction):
            raise InputError(f"'{args.apply}' is not a saved feature reduction.")
        output = reduction.signature_table(table)
        if reduction.n_factors_:
            output = output.join(reduction.factor_scores(table))
        _write(args.out, {"signature.csv": output})
        print(f"Signature of {len(reduction.signature_)} feature(s) for {len(table)} case(s): "
              f"{args.out / 'signature.csv'}")
        return 0
    if not 0.0 < args.correlation <= 1.0:
        raise InputError(f"--correlation must be in (0, 1] (1 = no pruning); got {args.correlation:g}.")
    parameters = ReductionParameters(
        variance=VarianceFilterParameters(args.variance_rule, args.variance_percentile, args.variance_threshold,
                                          args.near_constant_share),
        correlation=CorrelationParameters(enabled=args.correlation < 1.0, threshold=min(args.correlation, 1.0)),
        factors=FactorParameters(n_factors=args.factors, rule=args.factor_rule),
        exclude=tuple(_names(args.exclude)),
        features=None if args.features is None else tuple(_names(args.features)),
    )
    reserved = {}
    if args.label:  # checked first: a label that cannot be explored stops the run before anything is fitted
        require_columns(table, [args.label], "feature table")
        exploration.check_label(labels_as_text(table[args.label].tolist(), f"label column '{args.label}'"),
                                name=f"label '{args.label}'")
        reserved[args.label] = "label (--label)"
    if args.volume:
        require_columns(table, [args.volume], "feature table")
    reduction = FeatureReduction(parameters)
    inputs = reduction.check(table, reserved)
    with ConsoleProgress("reduce") as bar:
        task = Task(bar)
        reduction.fit(table, task.sub(0.0, 0.8), reserved=reserved)
        tables = {"signature.csv": reduction.signature_table(table), "loadings.csv": reduction.loadings_table(),
                  "reduction_log.csv": reduction.report_}
        writers = [lambda: save_model(reduction, args.out / "reduction_model.json"),
                   lambda: exploration.plot_correlation_heatmap(reduction.correlation_, args.out / "correlation.png")]
        if reduction.n_factors_:
            writers.append(lambda: exploration.plot_loadings_heatmap(reduction.loadings_, args.out / "loadings.png",
                                                                     reduction.signature_))
        if args.label:
            volume = args.volume or exploration.find_volume_column(list(table.columns))
            features = list(inputs.selection.features)
            stats = exploration.univariate_table(table[features], table[args.label].tolist(),
                                                 table[volume] if volume else None)
            tables["exploration.csv"] = stats
            writers.append(lambda: exploration.plot_volcano(stats, args.out / "volcano.png"))
        task.update(0.85, "Writing tables and figures")
        _write(args.out, tables, writers)
        task.update(1.0, "Done")
    dropped = reduction.report_[reduction.report_["action"] == "dropped"]
    print(f"{len(reduction.features_in_)} features -> {len(reduction.kept_)} after the variance filter "
          f"({parameters.variance.rule}) and correlation pruning ({len(dropped)} dropped) -> "
          f"{reduction.n_factors_} factor(s) [{reduction.n_factors_rule_}]")
    left_out = [f"{name} ({why})" for name, why in inputs.selection.set_aside.items()
                if why not in ("identifier / clinical column", "pyradiomics diagnostics column")]
    if left_out:
        print("Not features: " + "; ".join(left_out[:10]) + (" ..." if len(left_out) > 10 else ""))
    for message in inputs.selection.warnings:
        print(f"warning: {message}")
    for _, row in reduction.signature_table_.iterrows():
        print(f"  {row['factor'] or '-':>4}  {row['feature']}")
    print(f"Tables, figures and reduction_model.json in {args.out}")
    return 0


def run_harmonise(args) -> int:
    from virtualbiopsy.columns import numeric_values, require_unique_cases
    from virtualbiopsy.signature import batch_effect, combat, load_model, save_model

    table = _read(args.table)
    if args.apply:
        require_unique_cases(table)
        model = load_model(args.apply)
        if not isinstance(model, combat.ComBatModel):
            raise InputError(f"'{args.apply}' is not a saved ComBat model.")
        _write(args.out, {"harmonised.csv": combat.apply_to_table(model, table)})
        print(f"{len(table)} case(s) harmonised with {args.apply}: {args.out / 'harmonised.csv'}")
        return 0
    if not args.batch:
        raise InputError("Name the batch / site column with --batch (or give --apply MODEL.json).")
    features, exclude = _names(args.features), _names(args.exclude)
    parameters = combat.ComBatParameters(parametric=not args.non_parametric)
    plan = combat.plan_harmonisation(table, args.batch, args.covariate, args.categorical, features, exclude,
                                     parameters)
    with ConsoleProgress("harmonise") as bar:
        task = Task(bar)
        output, model = combat.harmonise_table(table, args.batch, args.covariate, parameters, task.sub(0.0, 0.7),
                                               categorical=args.categorical, features=features, exclude=exclude)
        fitted = plan.rows
        before = numeric_values(table.loc[fitted], model.features)
        after = output.loc[fitted, model.features]
        batch = table.loc[fitted, args.batch].tolist()
        effect = batch_effect.batch_effect_table(before, after, batch)
        task.update(0.8, "Writing tables and figure")
        _write(args.out, {"harmonised.csv": output, "batch_effect.csv": effect},
               [lambda: save_model(model, args.out / "combat_model.json"),
                lambda: batch_effect.plot_batch_effect(before, after, batch, args.out / "batch_effect.png")])
        task.update(1.0, "Done")
    summary = batch_effect.summarise_batch_effect(effect)
    print(f"{len(model.features)} features of {sum(model.batch_counts)} cases in {len(model.batches)} batches "
          f"({'parametric' if model.parametric else 'non-parametric'} ComBat"
          f"{', covariates: ' + ', '.join(model.covariates) if model.covariates else ''}).")
    print(f"Features with a batch effect (Kruskal-Wallis p < 0.05): {summary['fraction_significant_before']:.0%} "
          f"before, {summary['fraction_significant_after']:.0%} after.")
    for note in model.notes:
        print(f"  note: {note}")
    print(f"Tables, figure and combat_model.json in {args.out}")
    return 0
