"""Kept for notebooks and scripts written against `climb_spark.session.build_session`; the code
lives in `climb_spark.lakehouse.session`."""
from climb_spark.lakehouse.session import build_session, spark_conf

__all__ = ["build_session", "spark_conf"]
