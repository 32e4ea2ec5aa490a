"""MLflow "models from code" entry point for :class:`models._pyfunc.CIPClassifierPyfunc`."""

from cip.models._pyfunc import CIPClassifierPyfunc
from mlflow.models import set_model

set_model(CIPClassifierPyfunc())
