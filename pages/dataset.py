"""Dataset: per-class gallery, class counts, image sizes and file formats, and mean colours."""

import random

import streamlit as st

from bloodcell.cells import DISPLAY_NAMES
from bloodcell.charts import counts_figure, mean_colour_figure
from bloodcell.dataset_stats import file_kinds, gallery_page, mean_colour, thumbnail
from pages.common import data_dir, load_dataset_overview, no_dataset_panel, page_setup

PER_PAGE = 12
COLUMNS = 6
FILES_NOTE = (
    "Read from each file's header. The two labs also saved their photos differently: the Barcelona classes "
    "mostly at JPEG quality 75 with colour at full resolution, the Munich classes at quality 95 with colour "
    "at half resolution. Quality 75 leaves faint 8x8 block edges in every Barcelona cell: one more way to "
    "tell the labs apart without looking at the cell. Saving each image the other lab's way changes "
    "the accuracy of celltwin, cellpair and cellfocus by at most two of the 675 validation images "
    "(python -m benchmarks.compression): they do not read it.")


@st.cache_data(show_spinner="Reading file headers…", ttl=600)
def files_table(folder: str, label: str) -> list[dict]:
    counts = file_kinds(load_dataset_overview(folder).files[label])
    return [{"class": label, "size (w x h)": size, "saved as": saved_as, "images": n}
            for (size, saved_as), n in counts.most_common()]


@st.cache_data(show_spinner="Measuring colours…", ttl=600)
def class_colour(folder: str, label: str) -> tuple:
    return mean_colour(load_dataset_overview(folder).files[label])


@st.cache_data(max_entries=256, show_spinner=False)
def cached_thumbnail(path: str):
    return thumbnail(path)


page_setup()
st.title("Dataset")
dataset = load_dataset_overview(str(data_dir()))
if dataset is None:
    no_dataset_panel()
    st.stop()

st.caption(f"{dataset.total:,} images in `{dataset.root}`")
classes = list(dataset.files)

gallery, statistics = st.tabs(["Gallery", "Statistics"])
with gallery:
    label = st.segmented_control("Class", classes, default=classes[0], format_func=DISPLAY_NAMES.get,
                                 key="gallery_class") or classes[0]
    paths = dataset.files[label]
    pages = max(1, -(-len(paths) // PER_PAGE))
    controls = st.columns([2, 1, 3])
    page = controls[0].number_input(f"Page (of {pages})", 1, pages, 1, key=f"page_{label}") - 1
    if controls[1].button("Reshuffle", icon=":material/shuffle:"):
        st.session_state["gallery_seed"] = random.randrange(1 << 30)
    shown = gallery_page(paths, page, PER_PAGE, st.session_state.get("gallery_seed"))
    for row_start in range(0, len(shown), COLUMNS):
        for column, path in zip(st.columns(COLUMNS), shown[row_start:row_start + COLUMNS]):
            image = cached_thumbnail(str(path))
            if image is None:
                column.warning(f"{path.name}: unreadable")
            else:
                column.image(image, caption=path.name, width="stretch")
    chosen = st.selectbox("Enlarge an image", [p.name for p in shown], index=None,
                          placeholder="Choose an image of this page")
    if chosen:
        path = next(p for p in shown if p.name == chosen)
        image = thumbnail(path, side=640)
        if image is not None:
            from PIL import Image

            with Image.open(path) as original:
                width, height = original.size
            st.image(image, caption=f"{chosen} — {width}x{height} px, {path.stat().st_size / 1024:.0f} KB")

with statistics:
    st.plotly_chart(counts_figure(dataset.counts, "Images per class"), width="stretch")
    st.subheader("Image sizes and file formats")
    st.caption(FILES_NOTE)
    st.dataframe([row for label in classes for row in files_table(str(dataset.root), label)],
                 hide_index=True, width="stretch")
    st.subheader("Mean colour per class")
    st.caption("Mean RGB over a sample of 60 images per class. The three classes from one lab "
               "sit on a peach background, the two from the other on a blue-white one: a "
               "model can tell them apart by colour alone, without looking at the cell.")
    st.plotly_chart(mean_colour_figure({label: class_colour(str(dataset.root), label) for label in classes}),
                    width="stretch")
