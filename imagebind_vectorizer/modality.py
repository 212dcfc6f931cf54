"""Input kinds (what users send) and the encoders (what the model has) that embed them."""

from __future__ import annotations

from enum import StrEnum


class InputKind(StrEnum):
    """The seven kinds of input. Images and videos share the vision encoder."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DEPTH = "depth"
    THERMAL = "thermal"
    IMU = "imu"

    @property
    def encoder(self) -> str:
        """Name of the model encoder (the official modality key) that embeds this kind."""
        return "vision" if self in (InputKind.IMAGE, InputKind.VIDEO) else self.value

    @classmethod
    def parse(cls, name: str) -> InputKind:
        key = name.strip().lower()
        aliases = {"vision": cls.IMAGE, "texts": cls.TEXT, "images": cls.IMAGE}
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            valid = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown input kind {name!r}; expected one of {valid}") from None


#: The six encoders of ImageBind, in the official order.
ENCODERS: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")


def parse_encoders(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse `--modalities` ("text,vision,audio", "all", or kinds such as "image") into encoder names."""
    items = [s for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names: set[str] = set()
    for raw in items:
        item = raw.strip().lower()
        if not item:
            continue
        if item == "all":
            names.update(ENCODERS)
        elif item in ENCODERS:
            names.add(item)
        else:
            names.add(InputKind.parse(item).encoder)
    if not names:
        raise ValueError("no modalities enabled")
    return tuple(e for e in ENCODERS if e in names)
