"""Inference: a model from weights (loading), predict's outputs for folders of photographs
(predict), their resumable state (results), Dask clusters (cluster) and SavedModel export
(export)."""
