"""Measurement: the CVPPP and COCO metrics (metrics), the leaf and plant traits (phenotype) and the
scoring of a model on labelled images (evaluate). Imports no command-line code."""
