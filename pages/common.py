"""What every page shares: cached loaders and the sidebar's choices.

Models, their JSON files and the split manifest are loaded once per server
process with `st.cache_resource` and shared by all sessions. `LOADS` counts
real loads, so a test can check that reruns load nothing again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# Imported before any page draws a chart: plotly looks pandas up in
# sys.modules without importing it, so while another thread is still
# importing pandas (Streamlit loads it lazily) a chart would meet a
# half-initialised module and show the user a traceback.
import pandas  # noqa: F401
import streamlit as st

from bloodcell.config import DEFAULT_MODEL, resolve_data_dir, resolve_models_dir
from bloodcell.dataset_stats import DatasetOverview, overview
from bloodcell.errors import BloodcellError
from bloodcell.imaging import FULL_VIEW, VIEW_DESCRIPTIONS
from bloodcell.inference import available_models, read_json
from bloodcell.pairing import within_entries, within_words
from bloodcell.routing import route_words

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODEL_KEY = "model"
MODEL_WIDGET_KEY = "model_widget"
# How models are listed, and which is chosen when the default is missing: the
# default, the cell-view models, then the whole-image models.
MODEL_ORDER = tuple(dict.fromkeys((DEFAULT_MODEL, "cellroute", "cellpair", "cellagreepair", "cellfocus", "celltwin",
                                   "cellagree", "celltexture", "cellgrey", "cellfill", "mobilenetv2", "cnn")))

LOADS: Counter = Counter()
# What a table shows where a figure is missing (an unreadable file, a model never audited):
# Streamlit would print "None".
MISSING = "—"


def percent_column(decimals: int = 1, **options) -> st.column_config.NumberColumn:
    """A column of percentage points with a fixed number of decimals (see in_percent).

    Streamlit's "percent" format drops trailing zeros, which put "99.7%"
    beside "99.56%" in one column.
    """
    return st.column_config.NumberColumn(format=f"%.{decimals}f%%", **options)


def in_percent(rows: list[dict], columns: Iterable[str]) -> list[dict]:
    """`rows` with the fractions in `columns` as percentage points, for percent_column."""
    columns = set(columns)
    return [{key: 100 * value if key in columns and isinstance(value, (int, float)) else value
             for key, value in row.items()} for row in rows]


def models_dir() -> Path:
    return resolve_models_dir()


def data_dir() -> Path:
    return resolve_data_dir()


@st.cache_resource(show_spinner="Loading the model…")
def load_service(name: str, folder: str):
    """The model, its explainer and its lock: one per process, for all sessions."""
    from bloodcell.service import ModelService

    LOADS[name] += 1
    # A pair (bloodcell.pairing) shares its members' networks with their own
    # services instead of holding a second copy of each.
    service = ModelService.load(name, folder, load_member=lambda member: load_service(member, folder).classifier)
    service.warm_up()
    return service


@st.cache_resource
def load_model_files(name: str, folder: str) -> dict:
    """card, history, metrics, cross_source and audit JSON files of one model (None where missing)."""
    LOADS[f"{name}/files"] += 1
    base = Path(folder) / name
    files = {}
    for key in ("card", "history", "metrics", "cross_source", "audit"):
        try:
            files[key] = read_json(base / f"{key}.json")
        except BloodcellError:
            files[key] = None
    return files


@st.cache_resource
def load_split_sizes(folder: str) -> dict | None:
    """Images per split from models/split.json, or None when there is none."""
    from bloodcell.data import load_manifest, manifest_path

    LOADS["split.json"] += 1
    try:
        return load_manifest(manifest_path(Path(folder))).sizes()
    except BloodcellError:
        return None


@st.cache_resource(show_spinner="Measuring each lab's look…")
def load_lab_looks(data_folder: str, models_folder: str):
    """The audit's per-lab stain and empty fields, to rebuild counterfactual examples."""
    from bloodcell.counterfactual import lab_looks
    from bloodcell.data import load_manifest, manifest_path

    LOADS["lab_looks"] += 1
    return lab_looks(load_manifest(manifest_path(Path(models_folder))), Path(data_folder))


@st.cache_resource
def load_look_numbers(models_folder: str):
    """Each training lab's look as numbers (bloodcell.lookswap), or the reason there are none."""
    from bloodcell.lookswap import LOOKS_FILE, load_looks

    LOADS["lab_looks.json"] += 1
    try:
        return load_looks(Path(models_folder) / LOOKS_FILE)
    except BloodcellError as exc:
        return str(exc)


@st.cache_resource(show_spinner="Reading the dataset folder…", ttl=600)
def load_dataset_overview(folder: str) -> DatasetOverview | None:
    return overview(Path(folder))


def model_names() -> list[str]:
    """The shipped models in MODEL_ORDER, then any others by name."""
    return sorted(available_models(models_dir()),
                  key=lambda n: (MODEL_ORDER.index(n) if n in MODEL_ORDER else len(MODEL_ORDER), n))


def best_for_other_labs() -> tuple[str, float] | None:
    """The shipped model most often right on the cross-source cells, and how often (None: none measured)."""
    measured = {name: files["cross_source"]["accuracy"] for name in model_names()
                if (files := load_model_files(name, str(models_dir())))["cross_source"]}
    return max(measured.items(), key=lambda item: item[1]) if measured else None


def carry_over_words(best: tuple[str, float]) -> str:
    """`best_for_other_labs` in words; every shipped cross_source.json was measured on Barcelona neutrophils."""
    return (f"{best[0]} carries over best to other labs' photos: it is right for {best[1]:.0%} of the neutrophils "
            "photographed in Barcelona, a class it saw only in Munich's photos")


def selected_model() -> str | None:
    return st.session_state.get(MODEL_KEY)


def training_words(card: dict) -> str:
    """What tells apart the models that see the same cell view: how they were trained."""
    recipe = card.get("hyperparameters", {})
    if card.get("pair") or card.get("route"):
        return f", {combined_models(card)}"
    if recipe.get("twin_share"):
        return ", trained on random textures and counterfactual twins too"
    if recipe.get("random_texture"):
        return ", trained on random textures too"
    return ""


def combined_models(card: dict) -> str:
    """How a pair or a cascade combines its models, in words (for a card of either)."""
    return route_words(card) if card.get("route") else pair_members(card)


def pair_members(card: dict) -> str:
    """A pair's two models and their roles (bloodcell.pairing)."""
    pair = card["pair"]
    offset = pair.get("group_offset")
    shift = (f" (its group decision shifted {abs(offset['log_odds']):.2f} log-odds "
             f"{'towards' if offset['log_odds'] >= 0 else 'away from'} {offset['lab']}, "
             "fitted on the validation split)") if offset else ""
    within = within_words(pair["between"]["model"], [entry["model"] for entry in within_entries(pair)],
                          pair.get("within_blend", 0.0))
    return f"{pair['between']['model']} between the labs{shift} and {within}"


def training_runs(card: dict) -> str:
    """How long a model trained: its epochs, or each run's for a model averaged from several."""
    runs = (card.get("soup") or {}).get("runs")
    if not runs:
        resumed = (card.get("resumed") or {}).get("after_epochs")
        return f"{card.get('epochs_run')} epochs (best {card.get('best_epoch')}" + (
            f"; stopped and resumed after epoch{'s' if len(resumed) > 1 else ''} "
            f"{' and '.join(map(str, resumed))})" if resumed else ")")
    each = ", ".join(f"{run['epochs_run']} epochs (best {run['best_epoch']}, seed {run['seed']})" for run in runs)
    return f"{len(runs)} runs whose weights were averaged: {each},"


def _keep_model_choice() -> None:
    st.session_state[MODEL_KEY] = st.session_state[MODEL_WIDGET_KEY]


def service_or_error(name: str):
    """The loaded model, or None after showing a clear error on the page."""
    try:
        return load_service(name, str(models_dir()))
    except BloodcellError as exc:
        st.error(f"The model **{name}** could not be loaded: {exc}")
        return None


def _leave_legacy_multipage_mode() -> None:
    """Make sure the page runs inside streamlit_app.py's st.navigation.

    Streamlit treats a folder named pages/ next to the entry script as its
    older multipage mode until some run calls st.navigation. A fresh server
    whose first visitor opens a page's own address (/predict) would then run
    that page alone: no page config, no navigation. Switching the mode off
    and rerunning sends the run through the entry script instead.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the legacy mode
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_setup() -> None:
    """First call of every page: the right navigation mode, then the shared sidebar."""
    _leave_legacy_multipage_mode()
    render_sidebar()


def render_sidebar() -> None:
    """Model choice and dataset status, shown on every page."""
    names = model_names()
    with st.sidebar:
        if names:
            if st.session_state.get(MODEL_KEY) not in names:
                preferred = next((n for n in MODEL_ORDER if n in names), names[0])
                st.session_state[MODEL_KEY] = preferred
            # Streamlit forgets a widget's state when a page that does not draw
            # it runs; the choice lives under a plain key and is copied in and out.
            st.session_state[MODEL_WIDGET_KEY] = st.session_state[MODEL_KEY]
            st.selectbox("Model", names, key=MODEL_WIDGET_KEY, on_change=_keep_model_choice,
                         help="Models found in the models folder. Predict can compare all of them; "
                              "the Trust page shows how far each one reads the cell rather than the lab.")
            card = load_model_files(st.session_state[MODEL_KEY], str(models_dir()))["card"] or {}
            default = " (the default)" if st.session_state[MODEL_KEY] == DEFAULT_MODEL else ""
            view = VIEW_DESCRIPTIONS.get(card.get("view", FULL_VIEW), "an unknown view")
            st.caption(f"Sees {view}{training_words(card)}{default}.")
        else:
            st.error(f"No trained model in `{models_dir()}`. Train one with "
                     "`python -m bloodcell train --model cnn`.")
        found = load_dataset_overview(str(data_dir()))
        if found:
            st.caption(f"Dataset: {found.total:,} images in `{data_dir()}`")
        else:
            st.caption(f"Dataset: not found at `{data_dir()}` (set `BLOODCELL_DATA`)")


def no_dataset_panel() -> None:
    st.info(
        f"No dataset was found at `{data_dir()}`.\n\n"
        "Get it with `python -m bloodcell download` (needs a Kaggle account and internet), "
        "or point the app at a folder laid out as `<class>/<image>` with the environment variable "
        "`BLOODCELL_DATA`, then restart the app.",
        icon="📂",
    )


def inject_styles() -> None:
    css = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else ""
    if css:
        st.html(f"<style>{css}</style>")

