"""Process-level helpers shared by the node executables."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from typing import Any

import rclpy
import yaml
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def parse_overrides(items: Iterable[Any], parameter: str) -> dict[str, Any]:
    """A string-array parameter of ``key=value`` entries -> ``{key: value}``, each value read as
    YAML (``iterations=3`` -> 3); a malformed entry raises ``ValueError`` naming ``parameter``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{parameter} entries must be key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


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


def shut_down(node: Node | None, close: Callable[[], None] | None = None) -> None:
    """Orderly end of a node process: ``close()`` (the node's own resources), destroy the node,
    shut rclpy down."""
    # A second Ctrl-C (a terminal signals the whole process group, then `wm-plan ros up`
    # forwards one) must not interrupt the teardown. It can land while the ignore is being
    # installed (CI saw a KeyboardInterrupt raised inside signal.signal): install it again.
    while True:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        except KeyboardInterrupt:
            continue
    if node is not None:
        if close is not None:
            close()
        node.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()
