"""Leaf data made: procedural Arabidopsis rosettes with exact leaf labels. leaves draws one leaf,
scenes the random style's backgrounds, pots, light and clutter, rosettes the plants and the
datasets (``leafseg synth``)."""
