"""The models a request names, in the order they are tried."""

from lunos.errors import ModelNotFound
from lunos.routing.preferences import Candidate, resolve

# Body fields that are Lunos's own: they choose models and endpoints and never reach a provider.
ROUTING_PARAMS = ("fallback_model", "models", "provider")


def candidates(catalog, body: dict) -> list[Candidate]:
    """``model`` (or the first of ``models``, or the catalog default), then ``fallback_model``,
    then ``models``, each once; any may carry variants (``:nitro``, ``:floor``, ``:thinking``).
    An unknown id is a ModelNotFound naming its param."""
    listed = [(f"models[{i}]", name) for i, name in enumerate(body.get("models") or [])]
    if body.get("model"):
        named = [("model", body["model"])]
    elif listed:
        named = []
    else:
        named = [("model", catalog.default_model)]
    if body.get("fallback_model"):
        named.append(("fallback_model", body["fallback_model"]))
    chosen = []
    for param, name in named + listed:
        candidate = resolve(catalog, name)
        if candidate is None:
            raise ModelNotFound(f"The model '{name}' does not exist in this gateway's catalog.", param=param)
        if all((c.model, c.variants) != (candidate.model, candidate.variants) for c in chosen):
            chosen.append(candidate)
    return chosen
