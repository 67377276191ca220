"""``virtualbiopsy predict``: outcome models, their explanations, and survival by image-signature cluster.

Sub-commands: ``cohort`` (write the synthetic cohort with known signal), ``train`` (nested-CV model,
metrics with CIs, model folder with its model card), ``apply`` (predictions and SHAP values for a
new table) and ``survival`` (k-means groups, Kaplan–Meier figure, log-rank test).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from virtualbiopsy.errors import InputError
from virtualbiopsy.progress import ConsoleProgress, Task

MODEL_HELP = "logistic, random_forest, gradient_boosting, svm (class endpoints), cox (survival)"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="outcome models (nested CV, bootstrap CIs, model cards), SHAP values, Kaplan-Meier by cluster",
        description=(
            "Outcome prediction from feature tables (CSV, one row per case, joined on --key): 'train' a model and "
            "write it with its model card and metrics.csv to --out; 'apply' it to a new table (predictions.csv, "
            "shap_values.csv); 'survival' clusters patients by k-means on a signature and compares their "
            "Kaplan-Meier curves (logrank.csv, kaplan_meier.png); 'cohort' writes the synthetic cohort with a "
            "known signal. Research use only, not for clinical decisions."
        ),
    )
    commands = parser.add_subparsers(dest="predict_command", metavar="STEP", required=True)

    cohort = commands.add_parser("cohort", help="write the seeded synthetic cohort (known informative feature)",
                                 description="Write cohort.csv (features, mycn_amplified, risk_class, os_days, "
                                             "os_event) and, split in two, image_features.csv and clinical.csv.")
    cohort.add_argument("--out", type=Path, required=True, help="output folder")
    cohort.add_argument("--n", type=int, default=200, help="number of patients (default 200)")
    cohort.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cohort.add_argument("--shuffled", action="store_true", help="permute the outcomes: no learnable signal")

    train = commands.add_parser("train", help="train and validate a model (nested CV) and save it with its card",
                                description="Nested cross-validation (imputation, scaling and feature selection "
                                            "inside the folds), bootstrap CIs, the final model refitted on every "
                                            "case. Writes model.joblib, model_card.json/.md, metrics.csv, "
                                            "cv_predictions.csv, shap_importance.csv and figures/ to --out. "
                                            "Several --model names (comma-separated, or 'all') write "
                                            "model_comparison.csv and one sub-folder per model.")
    _add_table_arguments(train)
    train.add_argument("--endpoint", help="class column (binary or multi-class)")
    train.add_argument("--time", help="follow-up time column (survival; with --event)")
    train.add_argument("--event", help="event column, 1 = event, 0 = censored (survival)")
    train.add_argument("--model", default="logistic", help=f"{MODEL_HELP}; comma-separated or 'all' to compare")
    train.add_argument("--out", type=Path, required=True, help="output folder (must not hold a model yet)")
    train.add_argument("--folds", type=int, default=5, help="outer CV folds (default 5)")
    train.add_argument("--inner-folds", type=int, default=3, help="inner CV folds for the grid search (default 3)")
    train.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    train.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    train.add_argument("--trees", type=int, default=100, help="trees of the forest / boosting (default 100)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    apply = commands.add_parser("apply", help="apply a saved model to a table: predictions and SHAP values",
                                description="Checks the model file against the SHA-256 in its card, then writes "
                                            "predictions.csv, shap_values.csv and per-case figures to --out.")
    apply.add_argument("--model", type=Path, required=True, help="model folder written by 'predict train'")
    _add_table_arguments(apply, features=False)
    apply.add_argument("--out", type=Path, required=True, help="output folder")
    apply.add_argument("--no-shap", action="store_true", help="skip the SHAP values")
    apply.add_argument("--figures", type=int, default=5, help="per-case figures for the first N cases (default 5)")

    survival = commands.add_parser("survival", help="k-means groups on a signature, Kaplan-Meier, log-rank",
                                   description="Writes clusters.csv, survival_summary.csv (n, events, median and "
                                               "restricted mean survival per group), logrank.csv and "
                                               "kaplan_meier.png to --out.")
    _add_table_arguments(survival)
    survival.add_argument("--time", required=True, help="follow-up time column")
    survival.add_argument("--event", required=True, help="event column, 1 = event, 0 = censored")
    survival.add_argument("--k", type=int, default=2, help="number of clusters (default 2)")
    survival.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    survival.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run)


def _add_table_arguments(parser, features: bool = True) -> None:
    parser.add_argument("--table", type=Path, action="append", required=True,
                        help="CSV of cases; repeat to join several tables (e.g. features and clinical) on --key")
    parser.add_argument("--key", default="case_id", help="case id column (default case_id)")
    if features:
        parser.add_argument("--features", nargs="+",
                            help="feature columns (default: every numeric column except the key, the endpoint and "
                                 "columns that look like outcomes, e.g. os_days, efs_event: those leak the answer)")


def _features(args):
    if not getattr(args, "features", None):
        return None
    return [f for item in args.features for f in item.split(",") if f]


def _table(args):
    from virtualbiopsy.prediction.data import join_frames, read_table

    frames = [read_table(path) for path in args.table]
    if len(frames) == 1:
        return frames[0]
    return join_frames(frames, args.key, [path.stem for path in args.table])


def run(args) -> int:
    """Run one step. Each step creates --out only once its inputs are checked; a run that fails leaves
    nothing behind (the command line's --out rule, :mod:`virtualbiopsy.cli.output`)."""
    steps = {"cohort": _cohort, "train": _train, "apply": _apply, "survival": _survival}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = steps[args.predict_command](args)
    from virtualbiopsy.prediction.data import DataWarning

    for message in {str(w.message) for w in caught if issubclass(w.category, DataWarning)}:
        print(f"warning: {message}")
    return code


def _output_folder(path: Path) -> Path:
    """Create --out (called once a step's inputs are checked, so bad input leaves no empty folder)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"--out '{path}' is a file, not a folder.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cohort(args) -> int:
    from virtualbiopsy.prediction.cohort import clinical_split, generate_cohort, shuffled

    cohort = generate_cohort(n_patients=args.n, seed=args.seed)
    if args.shuffled:
        cohort = shuffled(cohort, args.seed + 1)
    _output_folder(args.out)
    cohort.table.to_csv(args.out / "cohort.csv", index=False)
    image, clinical = clinical_split(cohort)
    image.to_csv(args.out / "image_features.csv", index=False)
    clinical.to_csv(args.out / "clinical.csv", index=False)
    print(f"Synthetic cohort (seed {args.seed}, {args.n} patients{', outcomes shuffled' if args.shuffled else ''}) "
          f"written to {args.out}: informative feature '{cohort.truth['informative']}' for mycn_amplified; "
          f"signature {', '.join(cohort.truth['signature'])} with hazard ratio {cohort.spec.hazard_ratio:g}.")
    return 0


def _train(args) -> int:
    from virtualbiopsy.prediction import figures
    from virtualbiopsy.prediction.data import prepare_dataset
    from virtualbiopsy.prediction.explain import explain, ranking
    from virtualbiopsy.prediction.model_card import CARD_JSON, save_model
    from virtualbiopsy.prediction.models import MODEL_NAMES, TrainParameters, check_model, compare_models, train

    names = [m.strip() for m in args.model.split(",") if m.strip()]
    survival = bool(args.time or args.event)
    if names == ["all"]:
        names = ["cox"] if survival else ["logistic", "random_forest", "gradient_boosting", "svm"]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise InputError(f"Unknown model(s) {', '.join(unknown)}; choose from: {MODEL_HELP}.")
    if (args.out / CARD_JSON).exists():
        raise InputError(f"'{args.out}' already holds a model; choose another --out (nothing was overwritten).")
    dataset = prepare_dataset(_table(args), args.endpoint, time=args.time, event=args.event,
                              features=_features(args), key=args.key)
    parameters = TrainParameters(model=names[0], outer_folds=args.folds, inner_folds=args.inner_folds,
                                 n_bootstrap=args.bootstrap, threshold=args.threshold, seed=args.seed,
                                 n_trees=args.trees)
    for name in names:
        check_model(dataset, replace(parameters, model=name))
    _output_folder(args.out)
    dataset.missing.to_csv(args.out / "missing_values.csv", index=False)
    with ConsoleProgress("predict train") as bar:
        task = Task(bar)
        if len(names) == 1:
            models = {names[0]: train(dataset, parameters, task.sub(0.0, 0.85))}
        else:
            comparison, models = compare_models(dataset, names, parameters, task.sub(0.0, 0.85))
            comparison.to_csv(args.out / "model_comparison.csv", index=False)
            primary = "c_index" if survival else "auc"
            figures.model_comparison(args.out / "model_comparison.png", comparison, primary)
        for index, (name, model) in enumerate(models.items()):
            folder = args.out if len(models) == 1 else args.out / name
            sub = task.sub(0.85 + 0.15 * index / len(models), 0.85 + 0.15 * (index + 1) / len(models))
            shap = explain(model, dataset.X, dataset.case_ids, max_cases=100, seed=args.seed, progress=sub)
            save_model(model, folder)
            model.cv_predictions.to_csv(folder / "cv_predictions.csv", index=False)
            ranking(shap).to_csv(folder / "shap_importance.csv", index=False)
            _training_figures(model, shap, folder / "figures")
    for name, model in models.items():
        print(f"{name}: " + "; ".join(f"{r.metric} {r.estimate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                                      for r in model.metrics.itertuples()))
    print(f"Model{'s' if len(models) > 1 else ''}, model card{'s' if len(models) > 1 else ''} and metrics written "
          f"to {args.out}. Research use only.")
    return 0


def _training_figures(model, shap, folder: Path) -> None:
    from virtualbiopsy.prediction import figures
    from virtualbiopsy.prediction.survival import analyse_groups

    cv = model.cv_predictions
    figures.predicted_vs_observed(folder / "predicted_vs_observed.png", cv, model.endpoint)
    figures.shap_bar(folder / "shap_importance.png", shap)
    figures.shap_beeswarm(folder / "shap_beeswarm.png", shap)
    if model.kind == "binary":
        positive = model.endpoint.classes[1]
        observed = (cv[model.endpoint.column].astype(str) == str(positive)).astype(int)
        column, negative = model.endpoint.column, model.endpoint.classes[0]
        figures.probability_calibration(folder / "calibration.png", observed, cv[f"p_{positive}"],
                                        label=figures.class_text(column, positive, model.endpoint.classes),
                                        negative=figures.class_text(column, negative, model.endpoint.classes))
    if model.kind == "time-to-event":
        analysis = analyse_groups(cv[model.endpoint.time], cv[model.endpoint.event], cv["risk_group"])
        figures.km_curves(folder / "risk_groups_km.png", analysis, "Risk groups (out-of-fold prognostic index)",
                          time_unit=figures.feature_unit(model.endpoint.time) or "time units")


def _apply(args) -> int:
    from virtualbiopsy.prediction import figures
    from virtualbiopsy.prediction.explain import explain
    from virtualbiopsy.prediction.model_card import apply_model, load_model

    model = load_model(args.model)
    predictions, X = apply_model(model, _table(args), args.key)
    _output_folder(args.out)
    predictions.to_csv(args.out / "predictions.csv", index=False)
    if not args.no_shap:
        with ConsoleProgress("predict apply") as bar:
            shap = explain(model, X, predictions[model.key], progress=Task(bar))
        shap.to_frame(model.key).to_csv(args.out / "shap_values.csv", index=False)
        cases = list(shap.values.index)
        for case in cases[: max(args.figures, 0)]:
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case)
            figures.shap_waterfall(args.out / "figures" / f"{safe}_waterfall.png", shap, case)
            figures.patient_in_cohort(args.out / "figures" / f"{safe}_in_cohort.png", model.feature_quantiles,
                                      shap.data.loc[case], model.used_features or None, shap.values.loc[case],
                                      title=f"Case {case} within the training cohort",
                                      prediction=float(shap.prediction[cases.index(case)]), output=shap.output,
                                      classes=shap.classes)
    print(f"{len(predictions)} case(s) predicted with '{model.name}' from {args.model}; written to {args.out}. "
          "Research use only.")
    return 0


def _survival(args) -> int:
    import pandas as pd

    from virtualbiopsy.prediction import figures
    from virtualbiopsy.prediction.data import prepare_dataset
    from virtualbiopsy.prediction.survival import cluster_survival

    dataset = prepare_dataset(_table(args), time=args.time, event=args.event, features=_features(args), key=args.key)
    _output_folder(args.out)
    with ConsoleProgress("predict survival") as bar:
        clustering, analysis = cluster_survival(dataset.X, dataset.time, dataset.event, args.k, args.seed,
                                                progress=Task(bar))
    pd.DataFrame({args.key: dataset.case_ids, "cluster": clustering.labels, args.time: dataset.time,
                  args.event: dataset.event}).to_csv(args.out / "clusters.csv", index=False)
    clustering.centres.rename_axis("cluster").to_csv(args.out / "cluster_centres.csv")
    analysis.summary.to_csv(args.out / "survival_summary.csv", index=False)
    analysis.logrank.to_csv(args.out / "logrank.csv", index=False)
    figures.km_curves(args.out / "kaplan_meier.png", analysis, f"Survival by k-means cluster (k = {args.k})",
                      time_unit=figures.feature_unit(args.time) or "time units")
    for row in analysis.summary.itertuples():
        print(f"{row.group}: n = {row.n}, {row.events} events, median {row.median_survival:.0f}, "
              f"RMST({row.rmst_tau:.0f}) {row.rmst:.0f}")
    print(f"log-rank p = {analysis.logrank['p'].iloc[0]:.3g}; written to {args.out}.")
    return 0
