"""examples/quickstart.ipynb on a real Jupyter kernel (nbclient), against the Docker
Engine and the local OCI registry: any cell error fails the test.

The notebook reads MLENV_NB_* variables for its package sources; here they point at
the fixture conda channel and PyPI index (conda-forge is not reachable from CI), a
unique environment name and registry namespace, and the test base image."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


@pytest.mark.docker
@pytest.mark.registry
def test_quickstart_notebook_runs_green(
    tmp_path, monkeypatch, docker_client, test_registry, base_image_remote, conda_channel, pypi_server
):
    import nbformat
    from nbclient import NotebookClient

    ns = f"nb-{uuid.uuid4().hex[:10]}"
    name = f"nbstory-{uuid.uuid4().hex[:6]}"
    settings = {
        "MLENV_NB_NAME": name,
        "MLENV_NB_CHANNEL": conda_channel,
        "MLENV_NB_CONDA": "mlenv-hello",
        "MLENV_NB_PYPI": "fixalpha==1.0.0",
        "MLENV_NB_PYPI_CHANGED": "fixalpha==1.1.0",
        "MLENV_NB_INDEX": str(pypi_server),
        "MLENV_NB_BASE": base_image_remote,
        "MLENV_NB_BASE_PYTHON": "/usr/bin/python3",
        "MLENV_NB_REGISTRY": f"oci://{test_registry}/{ns}",
        "MLENV_NB_REPOSITORY": f"{test_registry}/{ns}",
        "MLENV_NB_WORKDIR": str(tmp_path / "quickstart"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    finally:
        for ref in [t for img in docker_client.images.list() for t in img.tags if f"/{ns}/" in t]:
            docker_client.images.remove(ref, force=True)
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    html = "".join(o.get("data", {}).get("text/html", "") for outs in outputs.values() for o in outs)
    assert "sklearn-1.5-py311-cpu" in html  # the curated catalog rendered as a table
    assert f"{name}@1" in html and f"{name}@2" in html  # both versions registered and listed
    text = "".join(
        o.get("data", {}).get("text/plain", "") + o.get("text", "") for outs in outputs.values() for o in outs
    )
    assert "fixalpha==1.0.0" in text and "'reused'" in text
    assert (tmp_path / "quickstart-v1" / "mlenv.lock").is_file()
    assert os.environ["MLENV_NB_NAME"] == name
