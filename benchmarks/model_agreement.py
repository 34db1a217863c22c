"""How often the shipped models give the same answer, on the test split and on another lab's cells.

Each model's answer to an image is its class, or its flag ("not confident",
"unlike the training images", "not a cell") at the default threshold,
exactly as the CLI and the app give it. The Predict page quotes the two
figures this prints (bloodcell.service.SHIPPED_MODELS_AGREE_ON_TEST and
_ON_OTHER_LAB) to say that a split verdict is a warning sign in itself.
Nothing is chosen with them; re-run after shipping a model.

It also prints each model's verdicts on each set: how many answers are right,
and for each kind of flag how many images got it and for how many the
withheld best guess was right (the README's abstention figures). When both
models of bloodcell.service.SECOND_OPINION are compared, it prints how often
the second contradicts the first (second_opinion_differs), the figures the
Predict page quotes beside such a second opinion.

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
from bloodcell.service import SECOND_OPINION, second_opinion_differs


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


def second_opinion(first: tuple[list[str], list[str]], second: tuple[list[str], list[str]],
                   labels: list[str]) -> dict[str, int]:
    """How often the second model contradicts the first's unflagged answer, and whether it is right then.

    Each model comes as (answers, best guesses), as `answers` gives them.
    """
    def verdict(answer: str) -> str:
        return answer if answer in FLAGS else OK

    differs = {i for i in range(len(labels))
               if second_opinion_differs(verdict(first[0][i]), first[1][i], verdict(second[0][i]), second[1][i])}
    wrong = {i for i in range(len(labels)) if first[0][i] not in FLAGS and first[1][i] != labels[i]}
    return {"images": len(labels), "differs": len(differs),
            "second right when it differs": sum(second[1][i] == labels[i] for i in differs),
            "first wrong without a flag": len(wrong), "of those, contradicted": len(differs & wrong)}


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
        checked, checking = SECOND_OPINION
        if checked in per_model and checking in per_model:
            figures = second_opinion((per_model[checked], guesses[checked]), (per_model[checking], guesses[checking]),
                                     labels)
            print(f"{set_name}: {checking} contradicts {checked}'s unflagged answer for {figures['differs']} of "
                  f"{figures['images']} images (right itself for {figures['second right when it differs']}); "
                  f"{checked} answers {figures['first wrong without a flag']} wrongly without a flag, and "
                  f"{checking} contradicts {figures['of those, contradicted']} of those")
        figures = agreement(per_model, labels)
        print(f"{set_name}: all {len(classifiers)} models give the same answer for {figures['all agree']} "
              f"of {figures['images']} images ({figures['all agree'] / figures['images']:.1%}); "
              f"that answer is right for {figures['right when all agree']} of them")


if __name__ == "__main__":
    main()
