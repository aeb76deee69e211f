"""Alias of :mod:`leafseg.data.dataset`, kept for the code of earlier READMEs
(``leafseg.dataset``): the same module object, so setting an attribute here sets it there."""
import sys

from leafseg.data import dataset as _module

sys.modules[__name__] = _module
