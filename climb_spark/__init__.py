"""climb-spark: CLIMB pretraining-data mixture curation as Spark batch jobs over Delta tables."""

__version__ = "0.1.0"
