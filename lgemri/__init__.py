"""lgemri: the shared library of cardiac_mi for cardiac late-gadolinium-enhancement (LGE) MRI.

Image volumes and their geometry, NIfTI and DICOM conversion, the EMIDEC data layout and its
2D slice pipeline, LGE phantom studies, the AHA 17-segment model and label conventions. The
MONAI Label app, the simulator and the GAN all import it; it imports none of them.
"""

__version__ = "0.1.0"
