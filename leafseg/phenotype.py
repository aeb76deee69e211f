"""Alias of :mod:`leafseg.measure.phenotype`, kept for the code of earlier READMEs
(``leafseg.phenotype``): the same module object, so setting an attribute here sets it there."""
import sys

from leafseg.measure import phenotype as _module

sys.modules[__name__] = _module
