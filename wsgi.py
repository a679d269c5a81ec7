"""The WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, `flask --app wsgi …`."""

from app import configure_logging, create_app

app = create_app()
configure_logging(app.extensions["usher"].settings.log_level)
