"""MLflow "models from code" entry point for :class:`models._pyfunc.CIPClassifierPyfunc`."""

from mlflow.models import set_model

from models._pyfunc import CIPClassifierPyfunc

set_model(CIPClassifierPyfunc())
