"""Trained models as one: one decides between the labs, the other (or others) within a lab.

In the training data each class comes from one lab (`SOURCE_LAB`): basophil,
erythroblast and monocyte from Barcelona, myeloblast and neutrophil from
Munich. Inside one lab's group of classes every image has that lab's look, so
the look cannot tell those classes apart; only between the groups is it a
shortcut. So a pair splits the decision:

    p(class) = p_between(group of class) * p_within(class | its group)

`p_between` sums the calibrated probabilities of a model trained to ignore
the lab's look (celltwin) over each group; `p_within` renormalises those of
a model that is sharper inside a lab (cellfocus) over the class's group. The
pair has no weights of its own, only a temperature and an outlier detector
fitted like any model's; its folder holds a card naming its two members.

A pair may also re-centre the between model's group decision: one log-odds
offset for the first lab's group, added to the between model's calibrated
logits and fitted by the pair's log loss on the validation split (a bias
beside the temperature, as in bias-corrected temperature scaling). A
temperature rescales a model's confidence but cannot move where its group
decision sits; training against the look can leave it off centre.

A pair may also let both members decide inside a group: the within
probabilities become the softmax of a blend of the two members' calibrated
logits, `blend * z_between / T_between + (1 - blend) * z_within / T_within`
(a product of experts, the normalised geometric mean of their probabilities).
Both networks run for every image anyway, so this ensemble costs nothing at
inference; the group decision stays the between model's. A pair may have
several within models: they share `1 - blend` equally, so the within term
is the mean of their calibrated logits (a deep ensemble inside a group).

Grad-CAM stays exact: each member's head is global average pooling and a
Dense layer, so the gradient of the pair's log-probability with respect to a
member's last feature map is a weighted sum of that member's class maps
(`pair_class_maps`), and the pair's heatmap is the sum over all members.
The members may see different views when one is made from the other by
taking something away (`DERIVED_VIEWS`): the pair takes in the fuller view
and hands the other member its own, in the same frame, so the heatmaps still
add up. The caveat: the split leans on which lab photographed which class,
which is this dataset's structure, not a cell's.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bloodcell.config import CLASS_NAMES, SOURCE_LAB, check_model_name
from bloodcell.cellview import grey_of_cell_views
from bloodcell.errors import BloodcellError
from bloodcell.imaging import CELL_VIEW, GREY_CELL_VIEW
from bloodcell.inference import (CARD_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE, Classifier, Forward,
                                 load_outlier_detector, resolve_model_dir, softmax)
from bloodcell.runtime import AUTO

log = logging.getLogger("bloodcell")

# Card fields the two members must share for one input to serve both.
SHARED_FIELDS = ("classes", "input_size", "test_time_augmentation")
# (the pair's input view, a member's view) -> how that member's input is made
# from the pair's: the grey cell view is the cell view's crop in grey levels
# with its fine detail capped, so a member of each can share one input.
DERIVED_VIEWS: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    (CELL_VIEW, GREY_CELL_VIEW): grey_of_cell_views,
}
# What a member with a derived view does to the pair's input, in words.
DERIVED_VIEW_WORDS = {GREY_CELL_VIEW: "in grey levels with its fine detail capped"}
# A group per lab, in the order the labs first appear among the classes.
LABS: tuple[str, ...] = tuple(dict.fromkeys(SOURCE_LAB[name] for name in CLASS_NAMES))
# (groups, classes): 1 where the class belongs to the group.
GROUPS = np.array([[SOURCE_LAB[name] == lab for name in CLASS_NAMES] for lab in LABS], np.float64)
GROUP_OF_CLASS = GROUPS.argmax(axis=0)
_EPSILON = 1e-12
# The group offset is searched within +-this many log-odds: past it the
# between model would no longer decide anything.
GROUP_OFFSET_BOUND = 6.0


def check_within_blend(blend: float) -> float:
    """`blend` as a float, or a clear error unless it is a share between 0 and 1."""
    try:
        blend = float(blend)
    except (TypeError, ValueError):
        raise BloodcellError(f"the within blend must be a number between 0 and 1, not {blend!r}") from None
    if not 0.0 <= blend <= 1.0:
        raise BloodcellError(f"the within blend is the between model's share of the within-group decision, "
                             f"between 0 and 1, not {blend}")
    return blend


def as_members(within: np.ndarray | Sequence[np.ndarray],
               within_temperature: float | Sequence[float]) -> tuple[list[np.ndarray], list[float]]:
    """The within models' logits and temperatures as two lists, from one model's or several models'."""
    if isinstance(within, np.ndarray) and within.ndim == 2:
        within = [within]
    within = [np.asarray(logits, np.float64) for logits in within]
    temperatures = [float(t) for t in np.atleast_1d(within_temperature)]
    if not within or len(temperatures) != len(within):
        raise BloodcellError(f"{len(within)} within models' logits and {len(temperatures)} temperatures: "
                             "a pair needs one temperature for each of its within models")
    return within, temperatures


def blended_within(between: np.ndarray, within: np.ndarray | Sequence[np.ndarray], between_temperature: float,
                   within_temperature: float | Sequence[float], blend: float = 0.0) -> np.ndarray:
    """The within-group probabilities: the softmax of the members' calibrated logits, blended.

    With `blend` 0 and one within model this is its calibrated softmax alone;
    several within models share `1 - blend` equally. The between model's group
    offset is left out: it is the same for every class of a group, so it
    cancels inside one.
    """
    within, temperatures = as_members(within, within_temperature)
    blend = check_within_blend(blend)
    within_mean = np.mean([logits / t for logits, t in zip(within, temperatures)], axis=0)
    return softmax(blend * np.asarray(between, np.float64) / between_temperature + (1.0 - blend) * within_mean)


def combine(between: np.ndarray, within: np.ndarray) -> np.ndarray:
    """p(class) = between's probability of the class's group x within's probability inside the group."""
    between, within = np.asarray(between, np.float64), np.asarray(within, np.float64)
    group_mass = between @ GROUPS.T
    within_mass = within @ GROUPS.T
    return group_mass[:, GROUP_OF_CLASS] * within / np.maximum(within_mass[:, GROUP_OF_CLASS], _EPSILON)


def group_offset_logits(offset: float, lab: str = LABS[0]) -> np.ndarray:
    """Per-class logit shifts that add `offset` to the log-odds of `lab`'s group."""
    if lab not in LABS:
        raise BloodcellError(f"the group offset names the lab {lab!r}, which photographed none of the classes "
                             f"({', '.join(LABS)})")
    return offset * GROUPS[LABS.index(lab)]


def fit_group_offset(between: np.ndarray, within: np.ndarray | Sequence[np.ndarray], labels: np.ndarray,
                     between_temperature: float, within_temperature: float | Sequence[float],
                     bound: float = GROUP_OFFSET_BOUND, within_blend: float = 0.0) -> float:
    """The first group's log-odds offset that minimises the pair's log loss on (between, within) logits.

    Only the between model's group probability depends on the offset, so this
    is a one-dimensional convex fit (a logistic regression's intercept with the
    between model's group log-odds as a fixed input).
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, int)
    within, within_temperature = as_members(within, within_temperature)
    if len(labels) == 0 or len(labels) != len(between) or any(len(between) != len(w) for w in within):
        raise BloodcellError("fitting the group offset needs logits and labels for the same, non-empty images")
    scaled = np.asarray(between, np.float64) / between_temperature
    within_p = blended_within(between, within, between_temperature, within_temperature, within_blend)

    def log_loss(offset: float) -> float:
        p = combine(softmax(scaled + group_offset_logits(offset)), within_p)
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(labels)), labels], _EPSILON))))

    result = minimize_scalar(log_loss, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-4})
    return float(result.x)


def log_probability_gradients(between: np.ndarray, within: np.ndarray, between_temperature: float,
                              within_temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """d log p(c) / d logit k of each member, shape (N, classes c, classes k) each.

    From log p(c) = log B(g) + log w(c) - log W(g), with B and W the members'
    probabilities summed over c's group g and each softmax at its temperature.
    """
    between, within = np.asarray(between, np.float64), np.asarray(within, np.float64)
    in_group = GROUPS[GROUP_OF_CLASS]  # (c, k): 1 where k shares c's group
    between_mass = np.maximum((between @ GROUPS.T)[:, GROUP_OF_CLASS], _EPSILON)  # (N, c)
    within_mass = np.maximum((within @ GROUPS.T)[:, GROUP_OF_CLASS], _EPSILON)
    # d log B(g)/d z_k = p_k (1[k in g] / B(g) - 1) / T
    d_between = between[:, None, :] * (in_group[None] / between_mass[:, :, None] - 1.0) / between_temperature
    # d (log w(c) - log W(g))/d z_k = (1[k = c] - w_k 1[k in g] / W(g)) / T
    d_within = (np.eye(len(CLASS_NAMES))[None] - within[:, None, :] * in_group[None]
                / within_mass[:, :, None]) / within_temperature
    return d_between, d_within


def pair_forward(between_logits: np.ndarray, within_logits: np.ndarray | Sequence[np.ndarray],
                 between_temperature: float, within_temperature: float | Sequence[float],
                 between_shift: np.ndarray | float = 0.0,
                 within_blend: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The pair's probabilities from its members' raw logits, and d log p(c) / d each member's logit k.

    The group offset shifts the between model's scaled logits by a constant and
    the blend is linear in the members' logits, so the gradients are those of
    `log_probability_gradients` for the blended within logits (temperature 1),
    shared out to each member by its weight in the blend. The within models'
    gradients come as a list, one per within model.
    """
    within_logits, within_temperature = as_members(within_logits, within_temperature)
    between = softmax(np.asarray(between_logits, np.float64) / between_temperature + between_shift)
    within = blended_within(between_logits, within_logits, between_temperature, within_temperature, within_blend)
    d_between, d_blended = log_probability_gradients(between, within, between_temperature, 1.0)
    share = (1.0 - within_blend) / len(within_logits)
    return (combine(between, within), d_between + within_blend / between_temperature * d_blended,
            [share / t * d_blended for t in within_temperature])


def pair_class_maps(between_maps: np.ndarray, within_maps: np.ndarray | Sequence[np.ndarray],
                    d_between: np.ndarray, d_within: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Each class's map for the pair: the members' class maps weighted by the gradients.

    Maps are (views, N, h, w, classes); the result has the same shape. A
    member's logit k is the mean over the views of its map k (pooled), so the
    gradient of log p(c) with respect to its feature maps is the sum of its
    class maps weighted by d log p(c) / d logit k. Several within models'
    maps and gradients come as lists of the same length.
    """
    if isinstance(within_maps, np.ndarray):
        within_maps, d_within = [within_maps], [d_within]
    total = np.einsum("vnhwk,nck->vnhwc", between_maps, d_between)
    for maps, gradient in zip(within_maps, d_within, strict=True):
        total = total + np.einsum("vnhwk,nck->vnhwc", maps, gradient)
    return total.astype(np.float32)


def check_members(between: Classifier, *within: Classifier) -> str:
    """The view all the members can be served from, or a clear error if there is none."""
    members = (between, *within)
    names = " and ".join(member.name for member in members)
    for field in SHARED_FIELDS:
        if len({json.dumps(member.card.get(field)) for member in members}) > 1:
            raise BloodcellError(f"{names} differ in {field}, so one input cannot serve them all")
    for view in dict.fromkeys(member.view for member in members):
        if all(member.view == view or (view, member.view) in DERIVED_VIEWS for member in members):
            return view
    views = ", ".join(member.view for member in members)
    raise BloodcellError(f"{names} differ in view ({views}) and none of these views is made from the others, "
                         "so one input cannot serve them all")


def within_entries(pair: dict) -> list[dict]:
    """A pair card's within models, as a list: one pair stores a dict, a pair with several a list."""
    within = pair.get("within") or []
    return [within] if isinstance(within, dict) else list(within)


def member_entries(pair: dict) -> list[tuple[str, dict]]:
    """(role, card entry) of each of a pair card's members: the between model first."""
    return [("between", pair["between"])] + [("within", entry) for entry in within_entries(pair)]


def members_sha256(pair: dict) -> dict:
    """The members' file checksums by role, shaped as the card stores them (what names a pair's files)."""
    within = [entry.get("file_sha256") for entry in within_entries(pair)]
    return {"between": pair["between"].get("file_sha256"), "within": within[0] if len(within) == 1 else within}


class PairedClassifier(Classifier):
    """A Classifier whose logits are the pair's log-probabilities (see the module docstring)."""

    single_network = False

    def __init__(self, card: dict, between: Classifier, within: Classifier | Sequence[Classifier],
                 model_dir: Path | None = None):
        self.within_members = (within,) if isinstance(within, Classifier) else tuple(within)
        view = check_members(between, *self.within_members)
        # `within` is the first within model: the only one, for a pair built with one.
        self.between, self.within = between, self.within_members[0]
        offset = card.get("pair", {}).get("group_offset") or {}
        # The between model's share of the decision inside a group: zero for a pair built without a blend.
        self.within_blend = check_within_blend(card.get("pair", {}).get("within_blend", 0.0))
        # Logit shifts for the between model, from the card: zero for a pair built without an offset.
        self.between_shift = group_offset_logits(float(offset.get("log_odds", 0.0)), offset.get("lab", LABS[0]))
        # The members' runner only names the runtime: the pair's own _forward runs both members.
        super().__init__(None, {**card, "view": view, "last_conv_layer": between.layer_name}, model_dir,
                         runner=between.runner)

    @property
    def view_description(self) -> str | None:
        """The pair's input in words, and how a member that sees it otherwise sees it."""
        return "; ".join([super().view_description or self.view] + [
            f"{member.name} sees it {DERIVED_VIEW_WORDS[member.view]}"
            for member in self.members if member.view != self.view])

    @property
    def members(self) -> tuple[Classifier, ...]:
        """The between model, then each within model."""
        return (self.between, *self.within_members)

    def _member_input(self, member: Classifier, images: np.ndarray) -> np.ndarray:
        return images if member.view == self.view else DERIVED_VIEWS[(self.view, member.view)](images)

    @property
    def model(self):
        names = ", ".join(member.name for member in self.members)
        raise BloodcellError(f"{self.name} combines {len(self.members)} networks ({names}); "
                             "Grad-CAM explains the pair, the other heatmap methods explain one network: "
                             "choose one of its members for them")

    def member_logits(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        """Each member's logits (before any temperature or offset) for a batch of the pair's inputs:
        the between model's, then each within model's."""
        return tuple(member.logits(self._member_input(member, images)) for member in self.members)

    def _forward(self, images: np.ndarray) -> Forward:
        a = self.between._forward(self._member_input(self.between, images))
        within = [member._forward(self._member_input(member, images)) for member in self.within_members]
        paired, d_between, d_within = pair_forward(
            a.logits, [b.logits for b in within], self.between.temperature,
            [member.temperature for member in self.within_members], self.between_shift, self.within_blend)
        return Forward(
            features=np.concatenate([a.features, *(b.features for b in within)], axis=1),
            logits=np.log(np.maximum(paired, _EPSILON)).astype(np.float32),
            class_maps=pair_class_maps(a.class_maps, [b.class_maps for b in within], d_between, d_within),
        )


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def within_words(between: str, within: str | Sequence[str], blend: float = 0.0) -> str:
    """Which models decide inside a lab's group of classes, in words (the card, the CLI and the pages)."""
    within = [within] if isinstance(within, str) else list(within)
    if not blend:
        if len(within) == 1:
            return f"{within[0]} within a lab"
        return f"{_listed(within)} together within a lab (their calibrated logits averaged)"
    if len(within) == 1:
        return (f"{within[0]} and {between} together within a lab "
                f"(their calibrated logits blended {1 - blend:g} : {blend:g})")
    share = (1.0 - blend) / len(within)
    weights = "equally" if abs(share - blend) < 1e-9 else f"{share:g} each and {between} {blend:g}"
    return (f"{_listed([*within, between])} together within a lab "
            f"(their calibrated logits averaged, weighted {weights})")


def pair_command(card: dict) -> str:
    """The `pair` command that builds the pair on `card`, as typed."""
    pair = card.get("pair", {})
    within = "".join(f" --within {entry['model']}" for entry in within_entries(pair))
    return (f"python -m bloodcell pair --between {pair['between']['model']}{within} --name {card['name']}"
            + pair_options(card))


def pair_options(card: dict) -> str:
    """The `pair` command's options beyond the members that built the pair on `card`, as typed."""
    pair = card.get("pair", {})
    return ((" --fit-group-offset" if pair.get("group_offset") else "")
            + (f" --within-blend {pair['within_blend']:g}" if pair.get("within_blend") else ""))


def load_pair(folder: Path, card: dict, verify_checksum: bool = True, runtime: str = AUTO,
              load_member: Callable[[str], Classifier] | None = None) -> PairedClassifier:
    """The pair in `folder`, its members loaded from beside it (or by `load_member`, which
    shares members a caller already holds) and checked against the card."""
    members = []
    for _, member in member_entries(card["pair"]):
        member_dir = folder.parent / member["model"]
        try:
            classifier = load_member(member["model"]) if load_member else \
                Classifier.load(str(member_dir), verify_checksum=verify_checksum, runtime=runtime)
        except BloodcellError as exc:
            raise BloodcellError(f"{folder.name} needs its member {member['model']}: {exc}") from None
        # The pair's own temperature and outlier check were fitted on these
        # members as they were: a retrained or recalibrated member voids them.
        if classifier.card.get("file_sha256") != member.get("file_sha256") or \
                abs(classifier.temperature - member.get("temperature", classifier.temperature)) > 1e-6:
            raise BloodcellError(
                f"{folder.name} was built from {member['model']} as it was before it was retrained or "
                f"recalibrated ({member_dir}); build it again: {pair_command({**card, 'name': folder.name})}")
        members.append(classifier)
    paired = PairedClassifier(card, members[0], members[1:], folder)
    paired.outlier_detector = load_outlier_detector(folder, card, verify_checksum)
    return paired


def make_pair(between: str, within: str | Sequence[str], name: str, data_dir: Path, models_dir: Path,
              fit_offset: bool = False, within_blend: float = 0.0) -> Path:
    """Write the pair's folder beside its members, then its test metrics, temperature and outlier check.

    `within` names one model, or several that share the decision inside a
    group equally. With `fit_offset`, the between model's group decision is
    first re-centred by a log-odds offset fitted on the validation split
    (`fit_group_offset`). A `within_blend` above 0 gives the between model
    that share of the decision inside a group (`blended_within`); it is
    chosen, not fitted.
    """
    from bloodcell.audit import trained_on_twins
    from bloodcell.data import load_manifest, manifest_path
    from bloodcell.training import remove_stale_results

    models_dir, data_dir = Path(models_dir), Path(data_dir)
    check_model_name(name)
    within_blend = check_within_blend(within_blend)
    within = [within] if isinstance(within, str) else list(within)
    if not within:
        raise BloodcellError("a pair needs at least one within model")
    if len({between, *within}) != 1 + len(within):
        raise BloodcellError("a pair needs different models: each may play one role once")
    member_dirs = [resolve_model_dir(member, models_dir) for member in (between, *within)]
    members = [Classifier.load(str(folder)) for folder in member_dirs]
    for member in members:
        if member.card.get("pair"):
            raise BloodcellError(f"{member.name} is itself a pair; a pair's members are trained models")
    # Checked before anything is written: a half-made pair folder would be listed as a model.
    view = check_members(*members)
    takes_input = next(m for m in members if m.view == view)
    if any(member.card.get("split") != members[0].card.get("split") for member in members[1:]):
        raise BloodcellError(f"{_listed([between, *within])} were not all trained on the same split")
    for folder in member_dirs:
        if folder.parent.resolve() != models_dir.resolve():
            raise BloodcellError(f"{folder} is not in {models_dir}: a pair finds its members beside it")
    out = models_dir / name
    if out.resolve() in {folder.resolve() for folder in member_dirs} or (out / MODEL_FILE).is_file():
        raise BloodcellError(f"{out} holds a trained model, which the pair would overwrite; give it another --name")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_results(out)
    first = members[0].card
    entries = [{"model": folder.name, "view": m.view, "file_sha256": m.card.get("file_sha256"),
                "temperature": m.temperature, "trained_on_twins": trained_on_twins(m.card)}
               for folder, m in zip(member_dirs, members)]
    card = {
        "name": name,
        "description": f"{between} decides between the labs' groups of classes, "
                       f"{within_words(between, within, within_blend)}: inside one lab's classes the look "
                       "is the same for every image, so only "
                       "between the groups can the lab's look be a shortcut.",
        **{field: first.get(field) for field in ("classes", "input_size", "test_time_augmentation", "split",
                                                 "last_conv_layer")},
        "view": view,
        "input": takes_input.card.get("input"),
        "pair": {
            "method": "p(class) = p_between(group of class) x p_within(class | group), groups = the labs "
                      "that photographed each class (bloodcell.pairing)",
            "groups": {lab: [c for c in CLASS_NAMES if SOURCE_LAB[c] == lab] for lab in LABS},
            # Members are found by their folder's name, beside the pair's folder; several
            # within models are listed, a single one is stored alone (as the shipped pairs' cards have it).
            "between": entries[0],
            "within": entries[1] if len(entries) == 2 else entries[1:],
            # The between model's share of the within-group decision, left out when it has none.
            **({"within_blend": within_blend} if within_blend else {}),
        },
        "parameters": sum(int(m.card.get("parameters") or 0) for m in members),
        "training_seconds": round(sum(float(m.card.get("training_seconds") or 0) for m in members), 1),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n")
    (out / HISTORY_FILE).write_text("[]\n")  # no training of its own: its members' pages have the curves
    manifest = load_manifest(manifest_path(models_dir))
    paired = load_pair(out, card)
    if fit_offset:
        between_logits, within_logits, labels = split_member_logits(paired, manifest, data_dir, "val")
        offset = fit_group_offset(between_logits, within_logits, labels, paired.between.temperature,
                                  [member.temperature for member in paired.within_members],
                                  within_blend=within_blend)
        card["pair"]["group_offset"] = {
            "lab": LABS[0], "log_odds": round(offset, 4),
            "fitted": "by the pair's log loss on the validation split, before the pair's temperature"}
        (out / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n")
        log.info("%s: %s's group log-odds offset %+.3f (validation split)", name, LABS[0], offset)
        paired = load_pair(out, card)
    report_like_training(paired, out, card, manifest, data_dir)
    return out


def report_like_training(model: Classifier, out: Path, card: dict, manifest, data_dir: Path) -> None:
    """What `train` reports on a model, for one combined from trained ones (a pair, a cascade) in `out`:
    its test metrics (metrics.json and the card), then its temperature and outlier check."""
    from bloodcell.metrics import classification_metrics
    from bloodcell.training import calibrate, fit_abstention, split_logits

    logits, labels = split_logits(model, manifest, data_dir, "test")
    metrics = classification_metrics(labels, softmax(logits).argmax(axis=1))
    metrics.update({"split": "test", "model": card["name"]})
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n")
    card["test_metrics"] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": metrics["n"]}
    (out / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n")
    calibrate(out, data_dir, manifest)
    fit_abstention(out, data_dir, manifest)
    log.info("%s: test accuracy %.4f", card["name"], metrics["accuracy"])


def split_member_logits(paired: PairedClassifier, manifest, data_dir: Path,
                        split: str) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The between model's logits, each within model's, and the labels of one split, through the
    shared input pipeline."""
    from bloodcell.training import split_batches

    batches = [(paired.member_logits(x), y) for x, y in split_batches(paired, manifest, data_dir, split)]
    logits = [np.concatenate(member) for member in zip(*(members for members, _ in batches))]
    return logits[0], logits[1:], np.concatenate([y for _, y in batches])
