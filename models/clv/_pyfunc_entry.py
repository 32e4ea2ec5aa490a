"""MLflow "models from code" entry point for :class:`models.clv._pyfunc.CLVPyfunc`."""

from cip.models.clv._pyfunc import CLVPyfunc
from mlflow.models import set_model

set_model(CLVPyfunc())
