"""Leaf data made: procedural Arabidopsis rosettes with exact leaf labels. leaves draws one leaf,
scenes the random style's backgrounds, pots, light and clutter, rosettes the plants and the
datasets (``leafseg synth``), trays whole trays of rosettes and dishes of seedlings with leaf and
plant labels (``leafseg synth --scene tray|dish``)."""
