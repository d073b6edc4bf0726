"""gunicorn settings for examples/gunicorn_gevent_app.py (see how to run it there).

    gunicorn -c examples/gunicorn_conf.py -k gevent -w 2 -b 127.0.0.1:8000 \\
        examples.gunicorn_gevent_app:app
"""

import logging

# The app's log lines (and the client's) on stderr, beside gunicorn's own.
logging.basicConfig(
    level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
)

preload_app = False  # each worker imports the app itself, after the fork
# gunicorn 25.1+ opens a control socket in $XDG_RUNTIME_DIR or ~/.gunicorn by default (for
# gunicornc); this app needs none. Older releases ignore the setting.
control_socket_disable = True


def worker_exit(server: object, worker: object) -> None:
    """Runs in the worker process as it exits: close its producer."""
    from examples.gunicorn_gevent_app import close_producer

    close_producer(timeout=5.0)
