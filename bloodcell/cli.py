"""Command line: python -m bloodcell {train,soup,pair,evaluate,predict,calibrate,export,audit,looks,bench,download} ...

Heavy imports (TensorFlow) happen inside the commands, so `--help` is instant.
Every user error ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bloodcell.abstention import DEFAULT_MIN_CONFIDENCE, VERDICT_HELP
from bloodcell.config import (CLASS_NAMES, DEFAULT_MODEL, MODEL_NAMES, SPLIT_SEED, resolve_cross_source_dir,
                              resolve_data_dir, resolve_models_dir)
from bloodcell.data import SPLITS
from bloodcell.errors import BloodcellError, ImageReadError
from bloodcell.runtime import lite_available

if TYPE_CHECKING:  # type hints only: the commands import these when run, so --help stays instant
    from bloodcell.framing import Framing
    from bloodcell.inference import Classifier, FilePrediction
    from bloodcell.lookswap import LookNumbers

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _add_models_dir(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--models-dir", metavar="DIR", default=None,
                        help=f"{help_text} (default: $BLOODCELL_MODELS or models/)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bloodcell",
                     description="Classify white-blood-cell images and evaluate the models.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                     metavar="{train,soup,pair,evaluate,predict,calibrate,export,audit,looks,bench,download}")

    train = commands.add_parser("train", help="train a model on the dataset's train split",
                                description="Train a model; write model.keras, history.json, "
                                "metrics.json and card.json into OUT/<model>/. Each finished epoch is saved "
                                "in OUT/.<model>.unfinished/: if the run stops, the same command goes on "
                                "from there.")
    train.add_argument("--model", required=True, choices=MODEL_NAMES)
    train.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    train.add_argument("--epochs", type=int, help="maximum epochs (default: the model's recipe)")
    train.add_argument("--out", metavar="DIR", help="models folder (default: $BLOODCELL_MODELS or models/)")
    train.add_argument("--base-weights", metavar="PATH",
                       help="local MobileNetV2 ImageNet .h5 file (default: $BLOODCELL_IMAGENET_WEIGHTS, else download)")
    train.add_argument("--image-size", type=int, help="input size in pixels (default: the model's)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the model's recipe)")
    train.add_argument("--seed", type=int, default=SPLIT_SEED,
                       help=f"seed of the weights' initialisation, shuffling and augmentation, for a second "
                       f"run of one recipe (default: the split's, {SPLIT_SEED}; the split itself never changes)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="recipe_options",
                       help="change one entry of the model's recipe (bloodcell/training.py RECIPES), e.g. "
                       "twin_stain_parts=true, round_trip_share=0.25, focus_levels=[5.7,12.5]; repeatable; "
                       "the card records each change")
    train.add_argument("--init-from", metavar="MODEL",
                       help="start from this trained model's weights (a name in the models folder, or a folder) "
                       "instead of ImageNet's or random ones, e.g. to train a shipped model further on your "
                       "lab's own photos; its network must be the same; the card records it")

    soup = commands.add_parser("soup", help="average several training runs of one model into one",
                               description="Average the weights of runs of one MobileNetV2 recipe that differ "
                               "in their seed (train each with --seed and its own --out) into OUT/<model>/ "
                               "(or OUT/<name>/), then report on it as training does: test metrics, LiteRT file, temperature "
                               "and out-of-distribution check.")
    soup.add_argument("runs", nargs="+", metavar="RUN", help="model folders of the runs, e.g. runs/a/celltwin")
    soup.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    soup.add_argument("--out", metavar="DIR", help="models folder (default: $BLOODCELL_MODELS or models/)")
    soup.add_argument("--name", help="the averaged model's name and folder (default: the runs' model, e.g. celltwin)")

    pair = commands.add_parser("pair", help="combine two trained models: one between the labs, one within a lab",
                               description="Write OUT/<name>/, a model that takes the probability of each "
                               "lab's group of classes from BETWEEN and the class inside the group from "
                               "WITHIN (bloodcell.pairing); then report on it as training does: test "
                               "metrics, temperature and out-of-distribution check.")
    pair.add_argument("--between", required=True, metavar="MODEL", help="the model that ignores the lab's look")
    pair.add_argument("--within", required=True, action="append", metavar="MODEL",
                      help="the model that decides inside a lab; give it more than once for several, "
                           "which share that decision equally (the mean of their calibrated logits)")
    pair.add_argument("--name", required=True, help="the pair's folder name in the models folder")
    pair.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    pair.add_argument("--out", metavar="DIR", help="models folder (default: $BLOODCELL_MODELS or models/)")
    pair.add_argument("--fit-group-offset", action="store_true",
                      help="re-centre BETWEEN's group decision first: one log-odds offset for the first lab's "
                           "group, fitted by the pair's log loss on the validation split")
    pair.add_argument("--within-blend", type=float, default=0.0, metavar="SHARE",
                      help="BETWEEN's share (0 to 1) of the decision inside a group: the within-group "
                           "probabilities come from the models' calibrated logits blended by it "
                           "(default 0: WITHIN alone)")

    route = commands.add_parser("route", help="combine two models: one answers, the other where it is unsure",
                                description="Write OUT/<name>/, a model that gives PRIMARY's answer, and "
                                "FALLBACK's where PRIMARY is not confident of a cell its outlier check finds "
                                "like the training images (bloodcell.routing); then report on it as training "
                                "does: test metrics, temperature and out-of-distribution check.")
    route.add_argument("--primary", required=True, metavar="MODEL", help="the model that answers first")
    route.add_argument("--fallback", required=True, metavar="MODEL",
                       help="the model that answers where PRIMARY is unsure of a familiar-looking cell")
    route.add_argument("--name", required=True, help="the cascade's folder name in the models folder")
    route.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    route.add_argument("--out", metavar="DIR", help="models folder (default: $BLOODCELL_MODELS or models/)")

    evaluate = commands.add_parser("evaluate", help="evaluate a model on every image of a folder",
                                   description="Evaluate on every image of a folder in the dataset "
                                   "layout (<class>/<image>); any subset of the classes.")
    evaluate.add_argument("--model", default=DEFAULT_MODEL,
                          help=f"model name in the models folder, or a model folder (default: {DEFAULT_MODEL})")
    evaluate.add_argument("--data", metavar="DIR", help="folder to evaluate (default: $BLOODCELL_DATA or data/blood-cells)")
    evaluate.add_argument("--split", choices=SPLITS,
                          help="only this split of the dataset, as the models folder's split.json made it "
                          "(default: every image of the folder)")
    evaluate.add_argument("--json", metavar="OUT", help="write the metrics as JSON to this file")
    _add_models_dir(evaluate, "where models live")

    predict = commands.add_parser("predict", help="predict the class of image files or folders",
                                  description="Predict image files (folders are searched). Writes one "
                                  "CSV row per file; unreadable files get an error and the rest go on. The "
                                  "verdict is " + "; ".join(f"'{verdict}': {meaning}"
                                                            for verdict, meaning in VERDICT_HELP.items()) + ".")
    predict.add_argument("--model", default=DEFAULT_MODEL,
                         help=f"model name in the models folder, or a model folder (default: {DEFAULT_MODEL})")
    predict.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                         help="below this calibrated probability the verdict is 'not confident' "
                         f"(default: {DEFAULT_MIN_CONFIDENCE})")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument("--csv", metavar="OUT", help="write the CSV here instead of standard output")
    predict.add_argument("--looks", action="store_true",
                         help="also give the best guess with each image shown in each training lab's look "
                         "(<models>/lab_looks.json; one column per lab), as the app's look swap does")
    _add_models_dir(predict, "where models live")

    calibrate = commands.add_parser("calibrate", help="fit temperature scaling and the out-of-distribution check",
                                    description="Fit the model's temperature on the validation split "
                                    "and its out-of-distribution detector on the train split (threshold "
                                    "on validation); store both with the model (card.json, ood.npz).")
    calibrate.add_argument("--model", required=True, help="model name in the models folder")
    calibrate.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    _add_models_dir(calibrate, "where models and split.json live")

    export = commands.add_parser("export", help="convert a model for the lean LiteRT runtime",
                                 description="Convert <model>/model.keras to model.tflite for the "
                                 "LiteRT interpreter (prediction and Grad-CAM without TensorFlow) and "
                                 "record its sha256 in the card. Training does this itself.")
    export.add_argument("--model", required=True, help="model name in the models folder, or a model folder")
    _add_models_dir(export, "where models live")

    audit = commands.add_parser("audit", help="check whether a model reads the lab instead of the cell",
                                description="Shortcut audit: colour-only and shape-only baselines, the share of "
                                "Grad-CAM mass on the cell, accuracy on test images re-stained and "
                                "re-backgrounded as the other lab's, the cross-source check and "
                                "abstention. Writes <models>/<model>/audit.json.")
    audit.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})")
    audit.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    audit.add_argument("--cross-source", metavar="DIR",
                       help="an evaluation-only folder in the dataset layout from another lab "
                       "(default: $BLOODCELL_CROSS_SOURCE, else skipped)")
    audit.add_argument("--limit", type=int, metavar="N",
                       help="audit only N test images (a quick look; the saved file says so)")
    _add_models_dir(audit, "where models and split.json live")

    looks = commands.add_parser("looks", help="measure each training lab's look as numbers, for the look swap",
                                description="Measure the white cells' stain, the field's colours and the cells' "
                                "fine detail on the audit's fixed sample of each lab's training photos "
                                "(bloodcell.lookswap); write <models>/lab_looks.json, which lets the app "
                                "show an upload in each lab's look without shipping any training photo.")
    looks.add_argument("--data", metavar="DIR", help="dataset folder (default: $BLOODCELL_DATA or data/blood-cells)")
    _add_models_dir(looks, "where split.json lives and lab_looks.json is written")

    bench = commands.add_parser("bench", help="measure latency, throughput, cold start and memory",
                                description="Benchmark on this machine: single-image latency per "
                                "method, batch throughput, the app's cold start, first prediction and "
                                "memory under 200 predictions with heatmaps (--predictions). Prints a table.")
    bench.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    bench.add_argument("--model", help="model for the in-process figures (default: the default model)")
    bench.add_argument("--data", metavar="DIR", help="where to take cell images from (default: $BLOODCELL_DATA)")
    bench.add_argument("--quick", action="store_true", help="a fast smoke run with few repetitions")
    bench.add_argument("--predictions", type=int, metavar="N",
                       help="uploads to the running app while its memory is traced (default: 200; 4 with --quick)")
    bench.add_argument("--look-swap", action="store_true",
                       help="also show every upload in both training labs' looks in the app (needs lab_looks.json)")
    _add_models_dir(bench, "where models live")

    download = commands.add_parser("download", help="download the public Kaggle dataset",
                                   description="Download 'Blood Cell Images for Cancer Detection' "
                                   "from Kaggle into data/blood-cells/.")
    download.add_argument("--out", metavar="DIR", help="target folder (default: data/blood-cells)")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from bloodcell.resume import STATE_FILE, checkpoint_folder
    from bloodcell.training import parse_recipe_options, train

    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    models_dir = resolve_models_dir(args.out)
    try:
        out = train(args.model, resolve_data_dir(args.data), models_dir,
                    epochs=args.epochs, base_weights=args.base_weights,
                    image_size=args.image_size, batch_size=args.batch_size, seed=args.seed, verbose=verbose,
                    recipe_options=parse_recipe_options(args.recipe_options), init_from=args.init_from)
    except KeyboardInterrupt:
        saved = checkpoint_folder(models_dir, args.model)
        if not (saved / STATE_FILE).is_file():
            raise
        print(f"interrupted: the finished epochs are saved in {saved}; run the same command again to go on "
              "from there", file=sys.stderr)
        return EXIT_INTERRUPTED
    metrics = json.loads((out / "metrics.json").read_text())
    card = json.loads((out / "card.json").read_text())
    print(f"{args.model}: test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} "
          f"on {metrics['n']} images; {card['epochs_run']} epochs in {card['training_seconds']:.0f} s; "
          f"saved to {out}")
    return 0


def _cmd_pair(args: argparse.Namespace) -> int:
    from bloodcell.pairing import make_pair, within_words

    out = make_pair(args.between, args.within, args.name, resolve_data_dir(args.data), resolve_models_dir(args.out),
                    fit_offset=args.fit_group_offset, within_blend=args.within_blend)
    card = json.loads((out / "card.json").read_text())
    offset = card["pair"].get("group_offset")
    print(f"{card['name']}: {args.between} between the labs"
          + (f" (group offset {offset['log_odds']:+.3f} log-odds for {offset['lab']})" if offset else "")
          + f", {within_words(args.between, args.within, card['pair'].get('within_blend', 0.0))}: test accuracy "
          f"{card['test_metrics']['accuracy']:.4f}, macro F1 {card['test_metrics']['macro_f1']:.4f}, "
          f"{card['ood']['test_flagged']:.1%} of the test split flagged; saved to {out}")
    return 0


def _cmd_route(args: argparse.Namespace) -> int:
    from bloodcell.routing import make_route, route_words

    out = make_route(args.primary, args.fallback, args.name, resolve_data_dir(args.data), resolve_models_dir(args.out))
    card = json.loads((out / "card.json").read_text())
    print(f"{card['name']}: {route_words(card)}: test accuracy {card['test_metrics']['accuracy']:.4f}, macro F1 "
          f"{card['test_metrics']['macro_f1']:.4f}, {card['ood']['test_flagged']:.1%} of the test split flagged; "
          f"saved to {out}")
    return 0


def _cmd_soup(args: argparse.Namespace) -> int:
    from bloodcell.soup import make_soup

    out = make_soup([Path(run) for run in args.runs], resolve_data_dir(args.data), resolve_models_dir(args.out),
                    args.name)
    card = json.loads((out / "card.json").read_text())
    runs = card["soup"]["runs"]
    seeds = ", ".join(str(run["seed"]) for run in runs)
    accuracies = ", ".join(f"{run['test_accuracy']:.4f}" for run in runs)
    print(f"{card['name']}: the average of {len(runs)} runs (seeds {seeds}; test accuracy {accuracies}): "
          f"test accuracy {card['test_metrics']['accuracy']:.4f}, macro F1 "
          f"{card['test_metrics']['macro_f1']:.4f}; saved to {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bloodcell.evaluation import evaluate_folder
    from bloodcell.metrics import accuracy_interval, format_confusion_matrix

    result = evaluate_folder(args.model, resolve_data_dir(args.data), args.models_dir, split=args.split)
    low, high = accuracy_interval(result["accuracy"], result["n"])
    where = f"{result['data']} ({args.split} split)" if args.split else result["data"]
    print(f"{result['model']} on {where}: accuracy {result['accuracy']:.4f} "
          f"(95% interval {low:.4f}-{high:.4f}; {result['n']} images, macro F1 {result['macro_f1']:.4f})")
    print(format_confusion_matrix(result["confusion_matrix"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from bloodcell.evaluation import collect_image_paths
    from bloodcell.inference import Classifier

    if not 0.0 <= args.min_confidence <= 1.0:
        raise BloodcellError("--min-confidence must be between 0 and 1")
    files = collect_image_paths([Path(p) for p in args.paths])
    looks = None
    if args.looks:
        from bloodcell.lookswap import LOOKS_FILE, load_looks, look_column

        looks = load_looks(resolve_models_dir(args.models_dir) / LOOKS_FILE)
    classifier = Classifier.load(args.model, args.models_dir)
    if looks is None:
        results = classifier.predict_sources(files, [str(f) for f in files])
        guesses = [[] for _ in files]
    else:
        results, guesses = predictions_in_looks(classifier, files, looks)
    header = ["file", "verdict", "reason", "predicted_class", "confidence", *CLASS_NAMES, "ood_score",
              "red_cell_size", "zoom", "error"]
    if looks:
        header += [look_column(lab) for lab in sorted(looks)]
    seconds = second_opinions(classifier, files, args.models_dir, args.min_confidence, results)
    if seconds is not None:
        header.append("second_opinion")
        guesses = [[*in_looks, second] for in_looks, second in zip(guesses, seconds)]
    if classifier.card.get("route"):
        # A cascade (bloodcell.routing) names the model that gave each answer.
        header.append("answered_by")
        guesses = [[*extra, result.answered_by or ""] for extra, result in zip(guesses, results)]
    handle = open(args.csv, "w", newline="") if args.csv else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(header)
        for result, in_looks in zip(results, guesses):
            if result.error is not None:
                writer.writerow([result.source, "unreadable", result.error, "", "", *[""] * len(CLASS_NAMES), "",
                                 "", "", result.error, *in_looks])
            else:
                ood = "" if result.ood_score is None else f"{result.ood_score:.2f}"
                red = "" if result.red_cell_size is None else f"{result.red_cell_size:.3f}"
                writer.writerow([result.source, result.verdict(args.min_confidence),
                                 result.reason(args.min_confidence), result.predicted_class, f"{result.confidence:.4f}",
                                 *[f"{p:.4f}" for p in result.probabilities], ood, red, f"{result.zoom:.2f}", "",
                                 *in_looks])
    finally:
        if handle is not sys.stdout:
            handle.close()
    failed = sum(r.error is not None for r in results)
    if failed:
        logging.getLogger("bloodcell").warning("%d of %d file(s) could not be read", failed, len(results))
    return 0


def second_opinions(classifier: Classifier, files: list[Path], models_dir: str | None, min_confidence: float,
                    results: list[FilePrediction]) -> list[str] | None:
    """Per file, the second opinion's class where it contradicts the answer (empty elsewhere), as the
    Predict page gives it (bloodcell.service.SECOND_OPINION); None when `classifier` is not the model
    it checks or the checking model cannot be loaded."""
    from bloodcell.abstention import OK
    from bloodcell.inference import Classifier
    from bloodcell.service import SECOND_OPINION, second_opinion_class

    checked, checking = SECOND_OPINION
    if classifier.name != checked:
        return None
    # A pair shares the networks it has in common with the pair already loaded.
    held = {member.name: member for member in getattr(classifier, "members", ())}
    try:
        second = Classifier.load(checking, models_dir,
                                 load_member=lambda name: held.get(name) or Classifier.load(name, models_dir))
    except BloodcellError as exc:
        logging.getLogger("bloodcell").warning("no second opinion from %s: %s", checking, exc)
        return None
    # Only an unflagged answer can be contradicted, so only those files are read again.
    asked = [index for index, result in enumerate(results) if result.verdict(min_confidence) == OK]
    others = dict(zip(asked, second.predict_sources([files[i] for i in asked], [str(files[i]) for i in asked])))
    opinions = [second_opinion_class(result, others.get(index), min_confidence)
                for index, result in enumerate(results)]
    contradicted = sum(map(bool, opinions))
    if contradicted:
        logging.getLogger("bloodcell").warning(
            "second opinion: %s contradicts %d of %d answers (column second_opinion); if these photos come "
            "from another microscope or lab than the two training labs, trust it there", checking, contradicted,
            len(opinions))
    return opinions


def predictions_in_looks(classifier: Classifier, files: list[Path],
                         looks: dict[str, LookNumbers]) -> tuple[list[FilePrediction], list[list[str]]]:
    """Each file's prediction and its best guess in each lab's look; every file decoded and framed once."""
    from bloodcell.framing import frame_photo
    from bloodcell.imaging import read_image
    from bloodcell.inference import FilePrediction

    results, guesses = [], []
    for file in files:
        try:
            image = read_image(file)
        except ImageReadError as exc:
            results.append(FilePrediction(str(file), error=str(exc)))
            guesses.append([""] * len(looks))
            continue
        framing = frame_photo(image)
        results.append(classifier.assess(str(file), image, framing=framing))
        guesses.append(guesses_in_looks(classifier, str(file), framing, looks))
    return results, guesses


def guesses_in_looks(classifier: Classifier, name: str, framing: Framing,
                     looks: dict[str, LookNumbers]) -> list[str]:
    """The best guess with the framed photo in each lab's look, labs in name order.

    An image without one centred white cell gets no rendering (empty
    guesses), as in the app.
    """
    from bloodcell.lookswap import render_in_looks

    if framing.mask.problem is not None:
        return [""] * len(looks)
    return [classifier.assess(name, rendering.image).predicted_class
            for rendering in render_in_looks(framing, looks)]


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from bloodcell.inference import resolve_model_dir
    from bloodcell.training import calibrate, fit_abstention

    model_dir = resolve_model_dir(args.model, args.models_dir)
    report = calibrate(model_dir, resolve_data_dir(args.data))
    print(f"{args.model}: temperature {report['temperature']:.3f}; validation ECE "
          f"{report['val']['ece_before']:.4f} -> {report['val']['ece_after']:.4f}, test ECE "
          f"{report['test']['ece_before']:.4f} -> {report['test']['ece_after']:.4f}")
    ood = fit_abstention(model_dir, resolve_data_dir(args.data))
    print(f"{args.model}: out-of-distribution threshold {ood['threshold']:.2f}; test images flagged "
          f"{ood['test_flagged']:.2%} ({ood['test_flagged_ood']:.2%} far from the training data, "
          f"{ood['test_flagged_unsure']:.2%} not confident)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from bloodcell.inference import resolve_model_dir
    from bloodcell.training import write_lite

    lite = write_lite(resolve_model_dir(args.model, args.models_dir))
    print(f"{args.model}: {lite['file']} ({lite['size_bytes'] / 1e6:.1f} MB), sha256 {lite['sha256'][:12]}...")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from bloodcell.audit import format_audit, run_audit

    report = run_audit(args.model, resolve_data_dir(args.data), args.models_dir,
                       cross_source_dir=resolve_cross_source_dir(args.cross_source), limit=args.limit)
    print(format_audit(report))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from bloodcell.bench import main as bench_main

    bench_main(args.json, args.model, args.models_dir, args.data, args.quick, args.predictions, args.look_swap)
    return 0


def _cmd_looks(args: argparse.Namespace) -> int:
    from bloodcell.data import load_manifest, manifest_path
    from bloodcell.lookswap import LOOKS_FILE, measure_lab_looks, save_looks

    models = resolve_models_dir(args.models_dir)
    looks = measure_lab_looks(load_manifest(manifest_path(models)), resolve_data_dir(args.data))
    path = save_looks(looks, models / LOOKS_FILE)
    for look in looks.values():
        print(f"{look.lab}: cell stain L {look.cell_stain.mean[0]:.1f}, field L {look.field_stain.mean[0]:.1f}, "
              f"detail {look.detail:.1f}, red cells {look.red_cell_size:.3f} of a {look.side}-pixel side")
    print(f"saved to {path}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from bloodcell.download import download_dataset

    target = download_dataset(Path(args.out) if args.out else None)
    print(f"dataset ready in {target}")
    return 0


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with C++ start-up lines (oneDNN notices) kept off stderr.

    Those lines are printed by native code before TF_CPP_MIN_LOG_LEVEL is
    read, so only a redirect of the file descriptor silences them.
    """
    if "tensorflow" in sys.modules:
        return
    import os

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Commands that always need TensorFlow; the others load models into LiteRT
# when they can, and start in a fraction of the time.
TENSORFLOW_COMMANDS = ("train", "soup", "pair", "route", "calibrate", "export", "audit", "bench")
MODEL_COMMANDS = ("evaluate", "predict")

COMMANDS = {"train": _cmd_train, "soup": _cmd_soup, "pair": _cmd_pair, "route": _cmd_route,
            "evaluate": _cmd_evaluate, "predict": _cmd_predict, "calibrate": _cmd_calibrate, "export": _cmd_export,
            "audit": _cmd_audit, "looks": _cmd_looks, "bench": _cmd_bench, "download": _cmd_download}


class _LowerCaseLevel(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _configure_logging(quiet: bool) -> None:
    """Warnings (and progress unless --quiet) go to stderr as 'warning: ...' lines."""
    logger = logging.getLogger("bloodcell")
    handler = next((h for h in logger.handlers if getattr(h, "_bloodcell_cli", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._bloodcell_cli = True  # type: ignore[attr-defined]
        handler.setFormatter(_LowerCaseLevel())
        logger.addHandler(handler)
    handler.stream = sys.stderr  # the current stderr, also when a caller swapped it
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet)
    try:
        if args.command in TENSORFLOW_COMMANDS or (args.command in MODEL_COMMANDS and not lite_available()):
            _import_tensorflow_quietly()
        return COMMANDS[args.command](args)
    except BloodcellError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
