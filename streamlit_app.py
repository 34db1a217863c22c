"""bloodcell: classify white-blood-cell images and see why the model decided.

Entry point: page config and navigation over pages/. Each page draws the
shared sidebar itself, so a page also works when run on its own.
"""

import streamlit as st

from pages.common import ASSETS, inject_styles

st.set_page_config(page_title="bloodcell", page_icon=str(ASSETS / "favicon.png"), layout="wide")
st.logo(str(ASSETS / "logo.svg"), size="large")
inject_styles()

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/dataset.py", title="Dataset", icon=":material/photo_library:"),
        st.Page("pages/training.py", title="Training", icon=":material/monitoring:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/biotech:"),
        st.Page("pages/trust.py", title="Trust", icon=":material/verified_user:"),
        st.Page("pages/about.py", title="About", icon=":material/info:"),
    ],
    # Navigation sits at the top. Streamlit's older multipage mode also reads
    # a folder named pages/ and, on a fresh server's first run, briefly lists
    # its files in the sidebar; .streamlit/config.toml hides that sidebar list.
    position="top",
)
navigation.run()
