"""The reference recommender service: EASE over a RecoWorld world, speaking the batch JSON
protocol of docs/recommender-service.md (``python -m examples.service.app --help``)."""
