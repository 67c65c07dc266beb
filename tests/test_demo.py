"""The development server's first start: a demo key that works, made only once."""

import os

from lunos.services.demo import ensure_demo_key


def test_demo_key_on_empty_install_only(app, tmp_path):
    with app.app_context():
        path = ensure_demo_key(tmp_path, app.config["SECRET_KEY"])
        assert path is not None and oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert ensure_demo_key(tmp_path, app.config["SECRET_KEY"]) is None
    key = path.read_text().strip()
    response = app.test_client().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"messages": [{"role": "user", "content": "hello"}]},
    )
    assert response.get_json()["choices"][0]["message"]["content"] == "hello"
