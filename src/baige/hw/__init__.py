"""Resources: the accelerator catalog (figures with sources) and the vendors' conventions."""

from baige.hw.catalog import CATALOG, ChipSpec, UnknownAcceleratorError, chip_keys, get_chip
from baige.hw.figures import Figure, unknown
from baige.hw.vendors import VENDORS, Vendor, get_vendor

__all__ = [
    "CATALOG",
    "VENDORS",
    "ChipSpec",
    "Figure",
    "UnknownAcceleratorError",
    "Vendor",
    "chip_keys",
    "get_chip",
    "get_vendor",
    "unknown",
]
