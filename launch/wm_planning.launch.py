"""ROS 2 launch file (needs a full ROS 2 install with the launch and launch_ros packages).

    ros2 launch wm_planning wm_planning.launch.py [config:=planar] [params_file:=/path.yaml]
        [start_arm:=true] [start_planner:=true]

Starts the MuJoCo arm node and the planner node with one parameters YAML (ROS 2 params-file
format, ``configs/ros/<config>.yaml`` from the package share). Without ROS 2 installed use
``wm-plan ros up`` instead (same nodes, same YAML).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _nodes(context, *args, **kwargs):
    params = LaunchConfiguration("params_file").perform(context)
    if not params:
        share = get_package_share_directory("wm_planning")
        config = LaunchConfiguration("config").perform(context)
        params = os.path.join(share, "configs", "ros", f"{config}.yaml")
    return [
        Node(
            package="wm_planning",
            executable="mujoco_arm_node",
            name="mujoco_arm",
            parameters=[params],
            output="screen",
            condition=IfCondition(LaunchConfiguration("start_arm")),
        ),
        Node(
            package="wm_planning",
            executable="planner_node",
            name="wm_planner",
            parameters=[params],
            output="screen",
            condition=IfCondition(LaunchConfiguration("start_planner")),
        ),
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config", default_value="planar", description="configs/ros/<config>.yaml"
            ),
            DeclareLaunchArgument("params_file", default_value="", description="overrides config"),
            DeclareLaunchArgument(
                "start_arm", default_value="true", description="start the MuJoCo arm"
            ),
            DeclareLaunchArgument(
                "start_planner", default_value="true", description="start the planner"
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
