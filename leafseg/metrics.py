"""Alias of :mod:`leafseg.measure.metrics`, kept for the code of earlier READMEs
(``leafseg.metrics``): the same module object, so setting an attribute here sets it there."""
import sys

from leafseg.measure import metrics as _module

sys.modules[__name__] = _module
