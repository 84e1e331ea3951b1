"""Physics-informed LGE phantom studies with EMIDEC ground truth.

Modules, each importing only those above it: ``anatomy`` (thorax and heart regions), ``mr`` (IR
contrast, coil, noise), ``render`` (the stack's geometry and the renderer every contrast uses),
``cases`` (subject draws, ground truth, writing), then the renderings: ``real`` (the
domain-randomised ``style="real"``), ``cine`` (bSSFP-like contrast) and ``study`` (the LGE case and
``write_phantom`` over every contrast and style).
"""

from .cases import PhantomCase
from .study import make_case, write_case, write_phantom

__all__ = ["PhantomCase", "make_case", "write_case", "write_phantom"]
