"""setuptools shim for colcon's ament_python build; metadata lives in pyproject.toml."""

from glob import glob

from setuptools import setup

package_name = "wm_planning"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/configs", glob("configs/*.yaml")),
        *[(f"share/{package_name}/{d}", glob(f"{d}/*.yaml")) for d in glob("configs/*/")],
        (f"share/{package_name}/sim_assets", glob("sim_assets/*.xml")),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
    ],
)
