"""gunicorn settings of the API (`gunicorn --config python:neuronx.gunicorn_conf neuronx.wsgi`).

Request targets up to 8 KiB reach the API, which judges them by their content: a query value
longer than its parameter allows is a `422 validation_error` naming it, like any other bad
value. gunicorn's own default is 4,094 bytes, above which it answers `414 URI Too Long` in HTML
before the API sees the request; a filter value of a few hundred non-ASCII characters,
percent-encoded, is already that long. 8,190 bytes is the most gunicorn allows short of no
limit at all; longer targets still get gunicorn's 414, as from most proxies (nginx: 8 KiB).
"""

limit_request_line = 8190
