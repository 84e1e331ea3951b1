"""Physics-informed LGE phantom studies with EMIDEC ground truth (see ``study``, ``anatomy``, ``mr``;
``real`` for the domain-randomised ``style="real"``)."""

from .study import PhantomCase, make_case, write_case, write_phantom

__all__ = ["PhantomCase", "make_case", "write_case", "write_phantom"]
