"""spark-submit jobs/train_quality.py --conf conf/<profile>.yaml [--set key=value]"""
import sys

from climb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-quality", *sys.argv[1:]]))
