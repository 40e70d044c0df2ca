"""Episode datasets: on-disk format (:mod:`.format`), sequence loader (:mod:`.loader`) and
collection policies (:mod:`.policies`)."""

from .format import FORMAT_VERSION, Dataset, DatasetError, DatasetWriter, Episode, EpisodeRecorder
from .loader import SequenceLoader

__all__ = [
    "FORMAT_VERSION",
    "Dataset",
    "DatasetError",
    "DatasetWriter",
    "Episode",
    "EpisodeRecorder",
    "SequenceLoader",
]
