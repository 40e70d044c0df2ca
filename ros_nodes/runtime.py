"""Process-level helpers shared by the node executables."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_until_shutdown(node: Node) -> None:
    """``rclpy.spin(node)`` that treats a shutdown by signal (Ctrl-C, SIGTERM) as a normal end.

    rclpy's signal handler shuts the context down; if the signal lands before ``spin`` has built
    its executor, building it raises an ``RCLError`` about an invalid context. That is the same
    orderly shutdown, not a failure, so it ends quietly; any error while the context is still
    valid propagates.
    """
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        return
    except Exception:
        if rclpy.ok():
            raise
