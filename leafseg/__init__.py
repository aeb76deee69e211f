"""leafseg: find and measure every leaf of a plant in an image (built on mrcnn)."""
__version__ = "0.1.0"
