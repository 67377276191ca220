"""``virtualbiopsy reduce`` and ``virtualbiopsy harmonise``: cohort feature tables (CSV) to a signature / ComBat.

Both write CSV tables, PNG figures and the fitted model as JSON to ``--out``; ``--apply MODEL.json``
applies a model fitted earlier to new cases instead of fitting one.
"""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    reduce = subparsers.add_parser(
        "reduce",
        help="reduce a cohort feature table to a signature (variance filter, correlation pruning, factor analysis)",
        description=(
            "Fit the feature reduction on a cohort table (CSV, one row per case; numeric columns other than ids, "
            "labels, batch and diagnostics_* are features) and write signature.csv, loadings.csv, "
            "reduction_log.csv (what was dropped and why), reduction_model.json, correlation.png and loadings.png. "
            "With --label also exploration.csv (Mann-Whitney p, Bonferroni, AUC, volume correlation) and "
            "volcano.png. With --apply, apply a saved reduction to new cases instead."
        ),
    )
    reduce.add_argument("--table", type=Path, required=True, help="feature table (CSV)")
    reduce.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    reduce.add_argument("--label", help="two-class label column for the univariate exploration")
    reduce.add_argument("--volume", help="volume column for volume surrogates (default: original_shape_MeshVolume)")
    reduce.add_argument("--exclude", nargs="*", default=[], metavar="COL", help="columns that are not features")
    reduce.add_argument("--variance-rule", choices=("percentile", "knee", "fixed", "off"), default="percentile",
                        help="low-variance threshold rule on min-max-scaled variances (default: percentile)")
    reduce.add_argument("--variance-percentile", type=float, default=10.0,
                        help="drop features below this percentile of the variances (default: 10)")
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
            "p of batch per feature before/after) and batch_effect.png (PCA and one feature, before/after). With "
            "--apply, harmonise new cases of known batches with a saved model instead."
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
    harmonise.add_argument("--non-parametric", action="store_true", help="non-parametric empirical Bayes")
    harmonise.add_argument("--apply", type=Path, metavar="MODEL.json", help="apply this saved ComBat model")
    harmonise.set_defaults(run=run_harmonise)


def _read(path: Path):
    import pandas as pd

    from virtualbiopsy.signature.tables import frame_from_columns

    if not path.is_file():
        raise FileFormatError(f"No table at '{path}'.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FileFormatError(f"'{path}' is not a readable CSV table ({error}).") from error
    return frame_from_columns({name: frame[name].tolist() for name in frame.columns})


def run_reduce(args) -> int:
    from virtualbiopsy.signature import exploration, load_model, save_model
    from virtualbiopsy.signature.reduction import (
        CorrelationParameters,
        FactorParameters,
        FeatureReduction,
        ReductionParameters,
        VarianceFilterParameters,
    )
    from virtualbiopsy.signature.tables import split_columns

    table = _read(args.table)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.apply:
        reduction = load_model(args.apply)
        if not isinstance(reduction, FeatureReduction):
            raise InputError(f"'{args.apply}' is not a saved feature reduction.")
        output = reduction.signature_table(table)
        if reduction.n_factors_:
            output = output.join(reduction.factor_scores(table))
        output.to_csv(args.out / "signature.csv", index=False)
        print(f"Signature of {len(reduction.signature_)} feature(s) for {len(table)} case(s): "
              f"{args.out / 'signature.csv'}")
        return 0
    parameters = ReductionParameters(
        variance=VarianceFilterParameters(args.variance_rule, args.variance_percentile, args.variance_threshold),
        correlation=CorrelationParameters(enabled=args.correlation < 1.0, threshold=min(args.correlation, 1.0)),
        factors=FactorParameters(n_factors=args.factors, rule=args.factor_rule),
        exclude=tuple(args.exclude) + ((args.label,) if args.label else ()),
    )
    with ConsoleProgress("reduce") as bar:
        task = Task(bar)
        reduction = FeatureReduction(parameters).fit(table, task.sub(0.0, 0.8))
        reduction.signature_table(table).to_csv(args.out / "signature.csv", index=False)
        reduction.loadings_table().to_csv(args.out / "loadings.csv", index=False)
        reduction.report_.to_csv(args.out / "reduction_log.csv", index=False)
        save_model(reduction, args.out / "reduction_model.json")
        task.update(0.85, "Figures")
        exploration.plot_correlation_heatmap(reduction.correlation_, args.out / "correlation.png")
        if reduction.n_factors_:
            exploration.plot_loadings_heatmap(reduction.loadings_, args.out / "loadings.png", reduction.signature_)
        if args.label:
            features, _ = split_columns(table, [name for name in parameters.exclude if name != args.volume])
            volume = args.volume or exploration.find_volume_column(list(table.columns))
            stats = exploration.univariate_table(table[features], table[args.label].tolist(),
                                                 table[volume] if volume else None)
            stats.to_csv(args.out / "exploration.csv", index=False)
            exploration.plot_volcano(stats, args.out / "volcano.png")
        task.update(1.0, "Done")
    dropped = reduction.report_[reduction.report_["action"] == "dropped"]
    print(f"{len(reduction.features_in_)} features -> {len(reduction.kept_)} after the variance filter and "
          f"correlation pruning ({len(dropped)} dropped) -> {reduction.n_factors_} factor(s) "
          f"[{reduction.n_factors_rule_}]")
    for _, row in reduction.signature_table_.iterrows():
        print(f"  {row['factor'] or '-':>4}  {row['feature']}")
    print(f"Tables, figures and reduction_model.json in {args.out}")
    return 0


def run_harmonise(args) -> int:
    from virtualbiopsy.signature import combat, load_model, save_model
    from virtualbiopsy.signature.tables import failed_rows

    table = _read(args.table)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.apply:
        model = load_model(args.apply)
        if not isinstance(model, combat.ComBatModel):
            raise InputError(f"'{args.apply}' is not a saved ComBat model.")
        combat.apply_to_table(model, table).to_csv(args.out / "harmonised.csv", index=False)
        print(f"{len(table)} case(s) harmonised with {args.apply}: {args.out / 'harmonised.csv'}")
        return 0
    if not args.batch:
        raise InputError("Name the batch / site column with --batch (or give --apply MODEL.json).")
    with ConsoleProgress("harmonise") as bar:
        task = Task(bar)
        output, model = combat.harmonise_table(table, args.batch, args.covariate,
                                               combat.ComBatParameters(parametric=not args.non_parametric),
                                               task.sub(0.0, 0.7), categorical=args.categorical)
        output.to_csv(args.out / "harmonised.csv", index=False)
        save_model(model, args.out / "combat_model.json")
        fitted = ~failed_rows(table).to_numpy()
        before, after = table.loc[fitted, model.features], output.loc[fitted, model.features]
        batch = table.loc[fitted, args.batch].tolist()
        effect = combat.batch_effect_table(before, after, batch)
        effect.to_csv(args.out / "batch_effect.csv", index=False)
        task.update(0.8, "Figure")
        combat.plot_batch_effect(before, after, batch, args.out / "batch_effect.png")
        task.update(1.0, "Done")
    summary = combat.summarise_batch_effect(effect)
    print(f"{len(model.features)} features of {sum(model.batch_counts)} cases in {len(model.batches)} batches "
          f"({'parametric' if model.parametric else 'non-parametric'} ComBat"
          f"{', covariates: ' + ', '.join(model.covariates) if model.covariates else ''}).")
    print(f"Features with a batch effect (Kruskal-Wallis p < 0.05): {summary['fraction_significant_before']:.0%} "
          f"before, {summary['fraction_significant_after']:.0%} after.")
    for note in model.notes:
        print(f"  note: {note}")
    print(f"Tables, figure and combat_model.json in {args.out}")
    return 0
