"""Alias of :mod:`leafseg.models.zoo`, kept for the code of earlier READMEs
(``leafseg.zoo``): the same module object, so setting an attribute here sets it there."""
import sys

from leafseg.models import zoo as _module

sys.modules[__name__] = _module
