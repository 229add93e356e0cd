import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neuronx.settings")
application = get_wsgi_application()
# What is loaded now lives as long as the worker: leave it out of the collector's full passes,
# which otherwise stall one request in a few thousand for tens of milliseconds.
gc.freeze()
