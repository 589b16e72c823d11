"""``srformer serve``: a local web page to upscale an image and compare models, and the API behind it.

:mod:`.app` is the Starlette application and documents the API; :mod:`.jobs` the queue and its worker
threads; :mod:`.catalog` the models offered; :mod:`.uploads` the checks of an uploaded file; :mod:`.engine`
the one place that calls the model code; :mod:`.server` runs it all with uvicorn. The page itself is
``static/`` (HTML, CSS and JavaScript, no build step). Needs the ``web`` extra: ``pip install "srformer[web]"``.
"""

from __future__ import annotations

import importlib.util

from srformer.errors import SRFormerError

#: The extra that brings the server's packages.
INSTALL_HINT = 'pip install "srformer[web]"'


def require_web_extra() -> None:
    """Raise :class:`SRFormerError` (one sentence) when the packages of the ``web`` extra are missing."""
    modules = ("starlette", "uvicorn", "python_multipart")
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise SRFormerError(f"srformer serve needs {', '.join(missing)}; install them with: {INSTALL_HINT}")
