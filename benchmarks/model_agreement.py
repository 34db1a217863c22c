"""How often the shipped models give the same answer, on the test split and on another lab's cells.

Each model's answer to an image is its class, or its flag ("not confident",
"unlike the training images", "not a cell") at the default threshold,
exactly as the CLI and the app give it. The Predict page quotes the two
figures this prints (bloodcell.service.SHIPPED_MODELS_AGREE_ON_TEST and
_ON_OTHER_LAB) to say that a split verdict is a warning sign in itself.
Nothing is chosen with them; re-run after shipping a model.

It also prints each model's verdicts on each set: how many answers are right,
and for each kind of flag how many images got it and for how many the
withheld best guess was right (the README's abstention figures).

    python -m benchmarks.model_agreement [--cross-source DIR] [--models NAME ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bloodcell.abstention import FLAGS, OK
from bloodcell.config import SHIPPED_MODEL_NAMES, resolve_cross_source_dir, resolve_data_dir, resolve_models_dir
from bloodcell.data import load_manifest, manifest_path
from bloodcell.evaluation import collect_labelled_images
from bloodcell.inference import Classifier


def answers(classifier: Classifier, paths: list[Path]) -> tuple[list[str], list[str]]:
    """Per image: the answer (the predicted class, or the flag in its place) and the best guess."""
    results, guesses = [], []
    for prediction in classifier.predict_sources(paths):
        verdict = prediction.verdict()
        results.append(prediction.predicted_class if verdict == OK else str(verdict))
        guesses.append(prediction.predicted_class)
    return results, guesses


def verdict_counts(answers: list[str], guesses: list[str], labels: list[str]) -> dict[str, tuple[int, int]]:
    """Per verdict ("answered" or a flag): how many images got it, and for how many the best guess is right."""
    counts = {}
    for kind in ("answered", *FLAGS):
        chosen = [i for i, answer in enumerate(answers) if (answer == kind if kind in FLAGS else answer not in FLAGS)]
        counts[kind] = (len(chosen), sum(guesses[i] == labels[i] for i in chosen))
    return counts


def agreement(per_model: dict[str, list[str]], labels: list[str]) -> dict:
    """How many images get one answer from every model, and how often that answer is right."""
    rows = list(zip(*per_model.values()))
    agreed = [i for i, row in enumerate(rows) if len(set(row)) == 1]
    right = sum(rows[i][0] == labels[i] for i in agreed)
    return {"images": len(rows), "all agree": len(agreed), "right when all agree": right}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cross-source", metavar="DIR", help="other-lab cells (default: $BLOODCELL_CROSS_SOURCE)")
    parser.add_argument("--models", nargs="+", default=list(SHIPPED_MODEL_NAMES), metavar="NAME",
                        help="models to compare (default: every shipped model)")
    args = parser.parse_args()
    data_dir = resolve_data_dir()
    manifest = load_manifest(manifest_path(resolve_models_dir()))
    sets = {"test split": [(data_dir / path, label) for path, label in manifest.paths("test")]}
    cross = resolve_cross_source_dir(args.cross_source)
    if cross is not None:
        sets["cross-source"] = collect_labelled_images(cross)
    classifiers = {name: Classifier.load(name) for name in args.models}
    for set_name, pairs in sets.items():
        paths, labels = [path for path, _ in pairs], [label for _, label in pairs]
        per_model, guesses = {}, {}
        for name, classifier in classifiers.items():
            per_model[name], guesses[name] = answers(classifier, paths)
            counts = verdict_counts(per_model[name], guesses[name], labels)
            print(f"{set_name}, {name}: " + "; ".join(f"{kind} {n} (best guess right for {right})"
                                                      for kind, (n, right) in counts.items() if n), flush=True)
        figures = agreement(per_model, labels)
        print(f"{set_name}: all {len(classifiers)} models give the same answer for {figures['all agree']} "
              f"of {figures['images']} images ({figures['all agree'] / figures['images']:.1%}); "
              f"that answer is right for {figures['right when all agree']} of them")


if __name__ == "__main__":
    main()
