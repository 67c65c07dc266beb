"""The models a request names, in the order they are tried."""
from lunos.errors import ModelNotFound

# Body fields that are Lunos's own: they choose models and never reach a provider.
ROUTING_PARAMS = ("fallback_model", "models")


def candidates(catalog, body: dict) -> list:
    """``model`` (or the first of ``models``, or the catalog default), then ``fallback_model``,
    then ``models``, each once. An unknown id is a ModelNotFound naming its param."""
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
        model = catalog.find(name)
        if model is None:
            raise ModelNotFound(f"The model '{name}' does not exist in this gateway's catalog.", param=param)
        if model not in chosen:
            chosen.append(model)
    return chosen
