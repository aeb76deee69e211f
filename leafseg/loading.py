"""Alias of :mod:`leafseg.models.loading`, kept for the code of earlier READMEs
(``leafseg.loading``): the same module object, so setting an attribute here sets it there."""
import sys

from leafseg.models import loading as _module

sys.modules[__name__] = _module
