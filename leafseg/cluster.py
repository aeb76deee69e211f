"""Alias of :mod:`leafseg.inference.cluster`, kept for the code of earlier READMEs
(``leafseg.cluster``): the same module object, so setting an attribute here sets it there."""
import sys

from leafseg.inference import cluster as _module

sys.modules[__name__] = _module
