"""Load examples/quickstart/make_dlq.py (the quickstart's data generator and its Python model of the three
example filters) as a module, without copying its code."""
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE_DLQ = os.path.join(REPO, "examples", "quickstart", "make_dlq.py")


def load():
    spec = importlib.util.spec_from_file_location("quickstart_make_dlq", MAKE_DLQ)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it puts its own directory on sys.path for fixed_consumer
    return module
