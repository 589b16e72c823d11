"""W&B artifacts as model sources: ``entity/project/weights-<run id>:best`` wherever a model path is taken.

Training logs its best weights as a ``weights-<run id>`` model artifact (aliases ``best``, ``step-N``;
:class:`srformer.training.callbacks.ExportBestWeights`) and, online, every Lightning checkpoint as
``model-<run id>`` (aliases ``latest``, ``best``). :func:`resolve_model_source` turns a reference to either
(``entity/project/name:alias``, ``project/name:alias`` with the logged-in entity, or
``wandb-artifact://entity/project/name:alias``) into a downloaded folder that
:func:`srformer.checkpoint.load_any` reads, and keeps the artifact so that a run can record its lineage
(``run.use_artifact``). A path that exists on disk is always a path, never a reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srformer.data.cache import default_cache_dir
from srformer.errors import CheckpointError

#: The URI form wandb itself writes artifact references in (run configs, launch jobs).
ARTIFACT_URI_PREFIX = "wandb-artifact://"

# [entity/]project/name:alias-or-version; a Windows drive ("C:/...") never matches (no slash before its colon).
_REFERENCE = re.compile(r"(?:[\w.-]+/){1,2}[\w.-]+:[\w.-]+")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from.

    Attributes:
        given: what the user wrote (a path, a shipped name, or an artifact reference).
        path: what :func:`srformer.checkpoint.load_any` reads: ``given`` itself, or the artifact's download folder.
        artifact: the W&B artifact it was downloaded from (for ``run.use_artifact``), else ``None``.
    """

    given: str
    path: str | Path
    artifact: Any = None

    @property
    def artifact_version(self) -> str | None:
        """``entity/project/name:vN``, the exact version used (an alias such as ``best`` moves on), or ``None``."""
        return None if self.artifact is None else self.artifact.qualified_name


def artifact_reference(text: str) -> str | None:
    """The W&B artifact reference ``text`` spells (without a ``wandb-artifact://`` prefix), or ``None`` when
    ``text`` is a path that exists or is not of the form ``[entity/]project/name:alias``."""
    if Path(text).exists():
        return None
    reference = text[len(ARTIFACT_URI_PREFIX) :].lstrip("/") if text.startswith(ARTIFACT_URI_PREFIX) else text
    if _REFERENCE.fullmatch(reference):
        return reference
    if text.startswith(ARTIFACT_URI_PREFIX):
        raise CheckpointError(f"{text} is not an artifact reference this tool reads: use {ARTIFACT_URI_PREFIX}"
                              "entity/project/name:alias")  # fmt: skip
    return None


def resolve_model_source(text: str, wandb_mode: str, cache_dir: Path | None = None) -> ModelSource:
    """``text`` as a :class:`ModelSource`: a local path as is; an artifact reference downloaded (online or
    disabled W&B mode; offline has no network by design) into ``cache_dir`` (default: the srformer cache's
    ``wandb-artifacts`` folder, one subfolder per artifact version, so a second use downloads nothing new).

    Raises:
        CheckpointError: an artifact reference in offline mode, or one W&B cannot fetch (unknown, no access,
            no network, not logged in).
    """
    reference = artifact_reference(text)
    if reference is None:
        return ModelSource(text, text)
    if wandb_mode == "offline":
        raise CheckpointError(
            f"{text} is not a file here and, as a W&B artifact, needs --wandb-mode online to download it"
            " (W&B is offline by default); give a local path or add --wandb-mode online"
        )
    import wandb

    try:
        artifact = wandb.Api().artifact(reference)
        # qualified_name is entity/project/name:vN; ":" is not allowed in Windows folder names.
        root = (cache_dir or default_cache_dir() / "wandb-artifacts") / artifact.qualified_name.replace(":", "/")
        folder = Path(artifact.download(root=str(root)))
    except (wandb.errors.Error, ValueError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"W&B artifact {reference} could not be downloaded: {reason}") from err
    return ModelSource(text, folder, artifact)
