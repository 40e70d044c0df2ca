"""MP4 writing through imageio-ffmpeg (the project's video path; OpenCV is not a dependency)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int) -> Path:
    """Write ``T`` frames ``H×W×3`` uint8 (H, W multiples of 8) as H.264 MP4 at ``fps``."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError(f"no frames for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=8)
    return path
