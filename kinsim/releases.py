"""Release numbers of serving engines (``deployment.engine_version``): parsed to (major, minor) for the presets
that change between releases (:mod:`kinsim.cost.engine_overhead`)."""

from __future__ import annotations

import re

#: A serving engine's release number as ``deployment.engine_version`` takes it: major.minor, then an optional
#: patch and suffix ("0.18.0", "0.11.2", "1.0.0rc3", "0.5.1.post1", "v0.14").
RELEASE = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?[0-9A-Za-z]*(?:[.+-][0-9A-Za-z]+)*")


def release_of(version: str) -> tuple[int, int] | None:
    """(major, minor) of a release number, or None where ``version`` is not one (:data:`RELEASE`)."""
    match = RELEASE.fullmatch(version.strip())
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def release_number(value: str) -> str | None:
    """Spec check of ``deployment.engine_version``: a release number (None), else the rule it breaks."""
    if release_of(value) is None:
        return "must be a release number such as '0.18.0' (major.minor, then an optional patch and suffix)"
    return None
