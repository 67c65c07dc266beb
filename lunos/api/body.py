"""The JSON body of a request, or an OpenAI-shaped 400."""
from flask import request

from lunos.errors import InvalidRequest


def json_body():
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidRequest("We could not parse the JSON body of your request: send a JSON object "
                             "with Content-Type: application/json.")
    return body
