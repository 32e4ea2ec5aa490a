"""MLflow "models from code" entry for the serving tests' recommender (no pickles)."""

import mlflow.pyfunc
from mlflow.models import set_model


class _RecommenderFolder(mlflow.pyfunc.PythonModel):
    """The artifacts hold the recommender's saved folder; the service reads it directly."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        return model_input


set_model(_RecommenderFolder())
