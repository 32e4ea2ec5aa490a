-- Run once by the postgres image on an empty data volume: the MLflow backend's database
-- beside the CIP store's (POSTGRES_DB=cip).
CREATE DATABASE mlflow OWNER cip;
