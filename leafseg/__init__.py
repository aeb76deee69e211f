"""leafseg: find and measure every leaf of a plant in an image (built on mrcnn)."""
__version__ = "0.1.0"


def counted(count: int, word: str, plural: str | None = None) -> str:
    """A count in words that agree, for messages: ``1 image``, ``2 images``, ``0 images``
    (``plural`` where adding an s is wrong: ``counted(n, "leaf", "leaves")``). Here, where every
    package may use it (leafseg.cli.options re-exports it for the commands)."""
    return f"{count} {word if count == 1 else plural or word + 's'}"
