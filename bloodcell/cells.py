"""Teaching notes on the five cell classes, shown by the app's Home page."""

from __future__ import annotations

from bloodcell.config import CLASS_NAMES

DISPLAY_NAMES: dict[str, str] = {
    "basophil": "Basophil",
    "erythroblast": "Erythroblast",
    "monocyte": "Monocyte",
    "myeloblast": "Myeloblast",
    "seg_neutrophil": "Segmented neutrophil",
}
# For narrow charts (several models side by side), where a long name is cut off.
SHORT_NAMES: dict[str, str] = {**DISPLAY_NAMES, "seg_neutrophil": "Seg. neutrophil"}

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "basophil": {
        "summary": "The rarest granulocyte (under 1% of white cells), 10-14 µm.",
        "nucleus": "Bilobed or S-shaped, often hidden under the granules.",
        "cytoplasm": "Packed with large, coarse, dark purple-black granules (heparin, histamine).",
        "look_alikes": "Told from an eosinophil by dark, not orange, granules that overlie the "
                       "nucleus; from a neutrophil by granule size and colour.",
    },
    "erythroblast": {
        "summary": "A nucleated red-cell precursor (normoblast); not normally seen in adult blood.",
        "nucleus": "Round, central, very dense and dark (pyknotic in late stages).",
        "cytoplasm": "Blue to pink-grey as haemoglobin accumulates; no granules.",
        "look_alikes": "Told from a small lymphocyte by its perfectly round, densely "
                       "condensed nucleus and the pinkish, haemoglobinised cytoplasm.",
    },
    "monocyte": {
        "summary": "The largest normal white cell, 12-20 µm; becomes a macrophage in tissue.",
        "nucleus": "Kidney- or horseshoe-shaped and folded, with lacy, loose chromatin.",
        "cytoplasm": "Abundant, grey-blue ('ground glass'), sometimes with vacuoles and fine granules.",
        "look_alikes": "Told from a large lymphocyte by the folded nucleus and grey cytoplasm; "
                       "from a myeloblast by looser chromatin and no nucleoli.",
    },
    "myeloblast": {
        "summary": "The earliest granulocyte precursor; many in blood suggest acute myeloid leukaemia.",
        "nucleus": "Large, round to oval, fills most of the cell; fine, open chromatin "
                   "with two to five visible nucleoli.",
        "cytoplasm": "A thin rim, deep blue; few or no granules, sometimes Auer rods.",
        "look_alikes": "Told from a lymphoblast by finer chromatin and Auer rods when present; "
                       "from a monocyte by the high nucleus-to-cytoplasm ratio and nucleoli.",
    },
    "seg_neutrophil": {
        "summary": "The most common white cell in adult blood (40-70%), 10-12 µm.",
        "nucleus": "Three to five lobes joined by thin strands of condensed chromatin.",
        "cytoplasm": "Pale pink with fine, lilac, hard-to-see granules.",
        "look_alikes": "Told from a band neutrophil by true segmentation; from an eosinophil "
                       "or basophil by its fine, pale granules.",
    },
}

assert set(DESCRIPTIONS) == set(CLASS_NAMES) == set(DISPLAY_NAMES) == set(SHORT_NAMES)
