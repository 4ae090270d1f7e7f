"""Conda package name -> PyPI distribution name, for packages the conda solve
provides. A conda record is a Python package when it is `noarch: python` or
depends on `python`; its PyPI name is its conda name unless listed below.
The table covers the common conda-forge renames; docs/lockfile.md documents it."""

from __future__ import annotations

from ..runtime.names import normalize

CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "py-xgboost-gpu": "xgboost",
    "matplotlib-base": "matplotlib",
    "msgpack-python": "msgpack",
    "pytables": "tables",
    "python-graphviz": "graphviz",
    "pyqt": "pyqt5",
    "tensorflow-base": "tensorflow",
    "tensorflow-cpu": "tensorflow",
    "py-opencv": "opencv-python",
    "libopencv": None,
    "pillow-simd": "pillow",
    "ruamel_yaml": "ruamel.yaml",
    "arrow-cpp": None,
    "pyarrow-core": "pyarrow",
    "python-kaleido": "kaleido",
    "lightgbm": "lightgbm",
}
NOT_PYTHON_PACKAGES = {"python", "python_abi"}


def pypi_name(conda_name: str, *, noarch: str | None, depends: list[str]) -> str | None:
    """The PyPI name a conda record provides, or None when it is not a Python package."""
    if conda_name in NOT_PYTHON_PACKAGES:
        return None
    is_python = noarch == "python" or any(d.split()[0] == "python" for d in depends if d.strip())
    if conda_name in CONDA_TO_PYPI:
        mapped = CONDA_TO_PYPI[conda_name]
        return normalize(mapped) if mapped else None
    return normalize(conda_name) if is_python else None
