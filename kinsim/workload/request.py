"""The request: the unit of work the engine serves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request.

    Attributes:
        request_id: unique name of the request.
        group_id: requests with the same group share one prompt (and its KV cache); a group is a task,
            done when all its requests are. A request alone forms its own group.
        arrival_s: arrival time, seconds from the start.
        prompt_tokens: prompt length, tokens.
        output_tokens: tokens to generate (after the generation cap).
        score: optional quality score carried through to reports (e.g. 1.0 for a correct sample).
    """

    request_id: str
    group_id: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    score: float | None = None
